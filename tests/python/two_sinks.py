# two_sinks.py: Reverse Word ending in to_sinks, for tests/integration/python_api.sh: every
# reversed word goes to both sinks (--out's first and second addresses), each through its
# own encoder: the first sends the word, the second the word in capitals.
import wallaroo


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    outs = wallaroo.tcp_parse_output_addrs(args)

    ab = wallaroo.ApplicationBuilder("two sinks")
    ab.new_pipeline("reverse", wallaroo.TCPSourceConfig(in_host, in_port, decoder))
    ab.to(reverse)
    ab.to_sinks([wallaroo.TCPSinkConfig(outs[0][0], outs[0][1], as_is),
                 wallaroo.TCPSinkConfig(outs[1][0], outs[1][1], capitals)])
    return ab.build()


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decoder(bs):
    return bs.decode("utf-8")


@wallaroo.computation(name="reverse")
def reverse(data):
    return data[::-1]


@wallaroo.encoder
def as_is(data):
    return data + "\n"


@wallaroo.encoder
def capitals(data):
    return data.upper() + "\n"
