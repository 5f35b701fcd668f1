# wire_app.py: the partitioned Alphabet whose messages for two letters cannot cross threads,
# for tests/integration/python_errors.sh (run on 2 threads, so messages are routed):
#   r  pickles, but its unpickling raises (on the thread it was sent to)
#   s  its pickling raises (on the thread that read it)
# Inside one thread messages stay objects and are never pickled: there both letters are fine.
import struct

import wallaroo


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    ab = wallaroo.ApplicationBuilder("python wire errors")
    ab.new_pipeline("votes", wallaroo.TCPSourceConfig(in_host, in_port, decode))
    ab.to_state_partition(add_votes, Total, "letter totals", letter_of)
    ab.to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode))
    return ab.build()


def refuse(letter, votes):
    raise ValueError("a %r vote cannot be rebuilt" % letter)


class Vote(object):
    def __init__(self, letter, votes):
        self.letter = letter
        self.votes = votes

    def __repr__(self):
        return "Vote(%r, %d)" % (self.letter, self.votes)

    def __reduce__(self):
        if self.letter == b"s":
            raise TypeError("a vote for s cannot be pickled")
        return (refuse if self.letter == b"r" else Vote, (self.letter, self.votes))


class Total(object):
    def __init__(self):
        self.votes = 0


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(bs):
    letter, votes = struct.unpack(">sI", bs)
    return Vote(letter, votes)


@wallaroo.partition
def letter_of(vote):
    return vote.letter


@wallaroo.state_computation(name="add votes")
def add_votes(vote, total):
    total.votes += vote.votes
    return (Vote(vote.letter, total.votes), True)


@wallaroo.encoder
def encode(vote):
    return struct.pack(">IsQ", 9, vote.letter, vote.votes)
