# alphabet.py: the Alphabet vote counter of Wallaroo's Python tutorial, for roo-python.
#
# Input frames:  u32 BE length (5) | 1 byte letter | u32 BE votes
# Output frames: u32 BE length (9) | 1 byte letter | u64 BE the letter's running total
#
# One state object (AllVotes) holds every letter's total: to_stateful keeps one for the
# whole pipeline. Run it:
#   roo-python --application-module alphabet --in 127.0.0.1:7010 --out 127.0.0.1:7002
"""Alphabet: count votes per letter and send each letter's running total."""

import struct

import wallaroo


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    ab = wallaroo.ApplicationBuilder("alphabet")
    ab.new_pipeline("alphabet", wallaroo.TCPSourceConfig(in_host, in_port, decode))
    ab.to_stateful(add_votes, AllVotes, "letter state")
    ab.to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode))
    return ab.build()


class Votes(object):
    def __init__(self, letter, votes):
        self.letter = letter
        self.votes = votes


class AllVotes(object):
    def __init__(self):
        self.votes_by_letter = {}

    def update(self, votes):
        tally = self.votes_by_letter.get(votes.letter)
        if tally is None:
            tally = self.votes_by_letter[votes.letter] = Votes(votes.letter, 0)
        tally.votes += votes.votes

    def get_votes(self, letter):
        # A new object: the output must not change when the state changes later.
        return Votes(letter, self.votes_by_letter[letter].votes)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(bs):
    letter, votes = struct.unpack(">sI", bs)
    return Votes(letter, votes)


@wallaroo.state_computation(name="add votes")
def add_votes(data, state):
    state.update(data)
    return (state.get_votes(data.letter), True)


@wallaroo.encoder
def encode(data):
    return struct.pack(">IsQ", 9, data.letter, data.votes)
