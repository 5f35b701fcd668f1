# errors_app.py: the partitioned Alphabet with a user error planted for some letters, for
# tests/integration/python_errors.sh. Every other letter must stay exact.
#   t  the stateless step returns None: dropped, no error
#   u  the stateless step raises
#   v  the state computation returns a bare value, not (output, save)
#   w  the encoder returns an int
#   x  the state computation raises
#   y  the partition function raises
#   z  the partition function returns a float
# A decoder error (a payload that is not 5 bytes) closes its connection.
import struct

import wallaroo


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    ab = wallaroo.ApplicationBuilder("python errors")
    ab.new_pipeline("votes", wallaroo.TCPSourceConfig(in_host, in_port, decode))
    ab.to(check)
    ab.to_state_partition(add_votes, Total, "letter totals", letter_of)
    ab.to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode))
    return ab.build()


class Vote(object):
    def __init__(self, letter, votes):
        self.letter = letter
        self.votes = votes

    def __repr__(self):
        return "Vote(%r, %d)" % (self.letter, self.votes)


class Total(object):
    def __init__(self):
        self.votes = 0


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(bs):
    letter, votes = struct.unpack(">sI", bs)
    return Vote(letter, votes)


@wallaroo.computation(name="check")
def check(vote):
    if vote.letter == b"t":
        return None
    if vote.letter == b"u":
        raise ValueError("no votes for u")
    return vote


@wallaroo.partition
def letter_of(vote):
    if vote.letter == b"y":
        raise KeyError("y has no partition")
    if vote.letter == b"z":
        return 1.5
    return vote.letter


@wallaroo.state_computation(name="add votes")
def add_votes(vote, total):
    if vote.letter == b"x":
        return 1 // 0
    total.votes += vote.votes
    if vote.letter == b"v":
        return Vote(vote.letter, total.votes)
    return (Vote(vote.letter, total.votes), True)


@wallaroo.encoder
def encode(vote):
    if vote.letter == b"w":
        return 42
    return struct.pack(">IsQ", 9, vote.letter, vote.votes)
