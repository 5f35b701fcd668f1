# alphabet_partitioned.py: Alphabet with one state object per letter, partitioned by letter
# across threads and workers (Wallaroo's to_state_partition), for roo-python.
#
# Input frames:  u32 BE length (5) | 1 byte letter | u32 BE votes
# Output lines:  "<letter> => <total>\n"
#
# The partition function returns data.letter[0]: on Python 3 that is an int, which Wallaroo
# (and roo-python) take as a character. The key list pre-declares the letters; other keys
# still get their own state when they first appear.
"""Alphabet, partitioned: one state object per letter."""

import string
import struct

import wallaroo


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    letters = list(string.ascii_lowercase)
    ab = wallaroo.ApplicationBuilder("alphabet partitioned")
    ab.new_pipeline("alphabet", wallaroo.TCPSourceConfig(in_host, in_port, decoder))
    ab.to_state_partition(add_votes, TotalVotes, "letter state", partition, letters)
    ab.to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encoder))
    return ab.build()


class Votes(object):
    def __init__(self, letter, votes):
        self.letter = letter
        self.votes = votes


class TotalVotes(object):
    def __init__(self):
        self.letter = b"?"
        self.votes = 0

    def update(self, votes):
        self.letter = votes.letter
        self.votes += votes.votes

    def get_votes(self):
        return Votes(self.letter, self.votes)


@wallaroo.partition
def partition(data):
    return data.letter[0]


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decoder(bs):
    letter, votes = struct.unpack(">sI", bs)
    return Votes(letter, votes)


@wallaroo.state_computation(name="add votes")
def add_votes(data, state):
    state.update(data)
    return (state.get_votes(), True)


@wallaroo.encoder
def encoder(data):
    return "%s => %d\n" % (data.letter.decode("ascii"), data.votes)
