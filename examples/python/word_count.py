# word_count.py: count words across lines of text, for roo-python: a _multi step splits
# each line into words, and a state partitioned by word counts each one.
#
# Input frames: u32 BE length | UTF-8 text (one or more lines)
# Output lines: "<word> => <count>\n", one per word occurrence
"""Word count: split lines into words and count each word."""

import wallaroo

PUNCTUATION = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def application_setup(args):
    in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    ab = wallaroo.ApplicationBuilder("Word Count Application")
    ab.new_pipeline("split and count", wallaroo.TCPSourceConfig(in_host, in_port, decode_lines))
    ab.to_parallel(split)
    ab.to_state_partition(count_word, WordTotal, "word totals", partition)
    ab.to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_word_count))
    return ab.build()


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_lines(bs):
    return bs.decode("utf-8")


@wallaroo.computation_multi(name="split into words")
def split(lines):
    words = []
    for line in lines.split("\n"):
        for word in line.lower().split(" "):
            word = word.strip(PUNCTUATION)
            if word:
                words.append(word)
    return words


class WordTotal(object):
    def __init__(self):
        self.count = 0


class WordCount(object):
    def __init__(self, word, count):
        self.word = word
        self.count = count


@wallaroo.partition
def partition(word):
    return word


@wallaroo.state_computation(name="count word")
def count_word(word, word_total):
    word_total.count += 1
    return (WordCount(word, word_total.count), True)


@wallaroo.encoder
def encode_word_count(word_count):
    return ("%s => %d\n" % (word_count.word, word_count.count)).encode("utf-8")
