# alphabet_partitioned_bin.py: examples/python/alphabet_partitioned.py with the seed's binary
# output (u32 BE 9 | letter | u64 BE running total), so that roo-receiver --alphabet-check can
# check it exactly (test python_chaos). Everything else is the example's own.
"""Alphabet, partitioned by letter, binary output."""

import string
import struct

import wallaroo

import alphabet_partitioned as example


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    ab = wallaroo.ApplicationBuilder("alphabet partitioned, binary output")
    ab.new_pipeline("alphabet", wallaroo.TCPSourceConfig(in_host, in_port, example.decoder))
    ab.to_state_partition(example.add_votes, example.TotalVotes, "letter state",
                          example.partition, list(string.ascii_lowercase))
    ab.to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encoder))
    return ab.build()


@wallaroo.encoder
def encoder(data):
    return struct.pack(">IsQ", 9, data.letter, data.votes)
