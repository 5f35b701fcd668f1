# test_wallaroo.py: unit tests of src/python/wallaroo.py, the `wallaroo` module that
# roo-python embeds: decorators, the builder, set-up checks and the plan roo-python walks.
# Run by tests/integration/python_api.sh: PYTHONPATH=src/python python3 test_wallaroo.py
import pickle
import struct
import sys
import types
import unittest

import wallaroo


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(bs):
    return bs


@wallaroo.encoder
def encode(data):
    return data


@wallaroo.computation(name="double")
def double(x):
    return x * 2


@wallaroo.computation_multi(name="split")
def split(s):
    return s.split()


@wallaroo.state_computation(name="count")
def count(data, state):
    return (data, True)


@wallaroo.state_computation_multi(name="count many")
def count_many(data, state):
    return ([data, data], False)


@wallaroo.partition
def first(data):
    return data[0]


class Tally(object):
    def __init__(self):
        self.n = 0


ARGS = ["prog", "--in", "127.0.0.1:7010", "--out", "127.0.0.1:7002"]


def app(*steps, name="my app", src=None, sink=None):
    ab = wallaroo.ApplicationBuilder(name)
    ab.new_pipeline("p", src or wallaroo.TCPSourceConfig("127.0.0.1", "7010", decode))
    for s in steps:
        getattr(ab, s[0])(*s[1:])
    ab.to_sink(sink or wallaroo.TCPSinkConfig("127.0.0.1", "7002", encode))
    return ab


def plan(ab, args=ARGS, module=None):
    return wallaroo._roo_plan(ab.build(), args, module or types.ModuleType("m"))


class Decorators(unittest.TestCase):
    def test_decorated_functions_still_call(self):
        self.assertEqual(double(3), 6)
        self.assertEqual(count(1, None), (1, True))
        self.assertEqual(double.name(), "double")
        self.assertEqual(double.compute(4), 8)
        self.assertEqual(split.compute_multi("a b"), ["a", "b"])
        self.assertEqual(first.partition("xy"), "x")
        self.assertEqual(decode.decode(b"z"), b"z")
        self.assertEqual(decode.header_length(), 4)
        self.assertEqual(decode.payload_length(b"\0\0\0\5"), 5)
        self.assertEqual(encode.encode(b"q"), b"q")

    def test_wrong_arity_is_a_parameter_error(self):
        with self.assertRaises(wallaroo.WallarooParameterError):
            wallaroo.computation(name="c")(lambda a, b: a)
        with self.assertRaises(wallaroo.WallarooParameterError):
            wallaroo.state_computation(name="s")(lambda a: a)
        with self.assertRaises(wallaroo.WallarooParameterError):
            wallaroo.encoder(lambda: 1)

    def test_length_formats(self):
        h = wallaroo._length_header
        self.assertEqual(h(4, ">I"), (4, False))
        self.assertEqual(h(4, "!I"), (4, False))
        self.assertEqual(h(2, "<H"), (2, True))
        self.assertEqual(h(8, ">Q"), (8, False))
        self.assertEqual(h(1, "B"), (1, sys.byteorder == "little"))
        for bad in ((4, ">H"), (4, "I4"), (3, ">3s"), (4, 7)):
            with self.assertRaises(wallaroo.WallarooParameterError):
                h(*bad)

    def test_decorated_objects_pickle_by_reference_free(self):
        # Messages and states are pickled, never the steps: a step needs no pickling.
        self.assertEqual(pickle.loads(pickle.dumps(Tally())).n, 0)


class Builder(unittest.TestCase):
    def test_build_returns_wallaroos_action_tuples(self):
        ab = app(("to", double), ("to_stateful", count, Tally, "tally"))
        acts = ab.build()
        self.assertEqual(acts[0], ("name", "my app"))
        self.assertEqual(acts[1][0], "new_pipeline")
        self.assertEqual(acts[1][2][:3], ("tcp", "127.0.0.1", "7010"))
        self.assertEqual([a[0] for a in acts[2:]], ["to", "to_stateful", "to_sink"])
        self.assertIsInstance(acts[3][2], wallaroo.StateBuilder)
        self.assertIsInstance(acts[3][2].____wallaroo_build____(), Tally)

    def test_topology_errors(self):
        E = wallaroo.WallarooParameterError
        with self.assertRaisesRegex(E, "before any new_pipeline"):
            wallaroo.ApplicationBuilder("a").to(double).build()
        with self.assertRaisesRegex(E, "after its sink"):
            app().to(double).build()
        with self.assertRaisesRegex(E, "has no sink"):
            wallaroo.ApplicationBuilder("a").new_pipeline(
                "p", wallaroo.TCPSourceConfig("h", "1", decode)).to(double).build()
        with self.assertRaisesRegex(E, "done.* without a sink"):
            wallaroo.ApplicationBuilder("a").new_pipeline(
                "p", wallaroo.TCPSourceConfig("h", "1", decode)).done().build()
        with self.assertRaisesRegex(E, "no pipeline"):
            wallaroo.ApplicationBuilder("a").build()
        with self.assertRaisesRegex(E, "to_sinks takes 1 to 64 sink configs, not 0"):
            wallaroo.ApplicationBuilder("a").new_pipeline(
                "p", wallaroo.TCPSourceConfig("h", "1", decode)).to_sinks([]).build()
        with self.assertRaisesRegex(E, "Kafka sources are not supported"):
            app(src=wallaroo.KafkaSourceConfig("t", [], "Warn", decode)).build()
        with self.assertRaisesRegex(E, "connectors are not supported"):
            wallaroo.ApplicationBuilder("a").new_pipeline("p", "connector")

    def test_multiple_pipelines_with_done(self):
        ab = app(("to", double)).done()
        ab.new_pipeline("q", wallaroo.TCPSourceConfig("127.0.0.1", "7011", decode))
        ab.to_sink(wallaroo.TCPSinkConfig("127.0.0.1", "7003", encode)).done()
        p = plan(ab, ["x", "--in", "127.0.0.1:7010,127.0.0.1:7011",
                      "--out", "127.0.0.1:7002,127.0.0.1:7003"])
        self.assertEqual([x[0] for x in p[4]], ["p", "q"])
        self.assertEqual(p[1], [])

    def test_to_sinks_fans_out_to_the_next_out_addresses(self):
        @wallaroo.encoder
        def other(data):
            return data

        ab = wallaroo.ApplicationBuilder("a")
        ab.new_pipeline("p", wallaroo.TCPSourceConfig("127.0.0.1", "7010", decode))
        ab.to_sinks([wallaroo.TCPSinkConfig("127.0.0.1", "7002", encode),
                     wallaroo.TCPSinkConfig("127.0.0.1", "7003", other)]).done()
        ab.new_pipeline("q", wallaroo.TCPSourceConfig("127.0.0.1", "7011", decode))
        ab.to_sink(wallaroo.TCPSinkConfig("127.0.0.1", "7004", encode))
        p = plan(ab, ["x", "--in", "127.0.0.1:7010,127.0.0.1:7011",
                      "--out", "127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7009"])
        self.assertEqual([x[5] for x in p[4]], [[encode._roo_fn, other._roo_fn],
                                                [encode._roo_fn]])
        # q's sink is the application's third: --out's third address, not its second.
        self.assertEqual(len(p[1]), 1)
        self.assertRegex(p[1][0], "pipeline 'q': its sink config says 127.0.0.1:7004 but "
                                  "--out gives 127.0.0.1:7009")


class Plan(unittest.TestCase):
    def test_plan_shape(self):
        ab = app(("to", double), ("to_parallel", split),
                 ("to_state_partition", count, Tally, "tallies", first, ["a", "b"]),
                 ("to_stateful", count_many, Tally, "one tally"),
                 ("to_state_partition_u64", count, Tally, "by number", first))
        name, warnings, ser, deser, pipes = plan(ab)
        self.assertEqual(name, "my_app")  # roo's names: [A-Za-z0-9_.-]
        self.assertEqual(warnings, [])
        self.assertIs(ser, wallaroo._roo_dumps)  # pickle
        self.assertEqual(deser(ser(Tally())).n, 0)
        (pname, hlen, little, dec, steps, (enc,)), = pipes
        self.assertEqual((pname, hlen, little), ("p", 4, False))
        self.assertIs(dec, decode._roo_fn)
        self.assertIs(enc, encode._roo_fn)
        kinds = [(s[0], s[1], s[3], s[4], s[5]) for s in steps]
        self.assertEqual(kinds, [(0, "double", False, None, None),
                                 (0, "split", True, None, None),
                                 (2, "count", False, "tallies", "tallies"),
                                 (1, "count many", True, "one_tally", "one tally"),
                                 (3, "count", False, "by_number", "by number")])
        self.assertIs(steps[0][2], double._roo_fn)
        self.assertIs(steps[2][7], first._roo_fn)
        self.assertIsInstance(steps[2][6](), Tally)

    def test_state_name_rules(self):
        E = wallaroo.WallarooParameterError
        with self.assertRaisesRegex(E, "two state classes"):
            plan(app(("to_stateful", count, Tally, "t"), ("to_stateful", count, dict, "t")))
        with self.assertRaisesRegex(E, "the same to roo"):
            plan(app(("to_stateful", count, Tally, "a b"), ("to_stateful", count, Tally, "a_b")))
        with self.assertRaisesRegex(E, "stateless computation"):
            plan(app(("to_stateful", double, Tally, "t")))
        with self.assertRaisesRegex(E, "is a state computation"):
            plan(app(("to", count)))

    def test_addresses_differing_from_in_and_out_warn(self):
        ab = app(src=wallaroo.TCPSourceConfig("localhost", "9999", decode))
        warnings = plan(ab)[1]
        self.assertEqual(len(warnings), 1)
        self.assertIn("localhost:9999 but --in gives 127.0.0.1:7010", warnings[0])

    def test_module_serialize(self):
        m = types.ModuleType("m")
        m.serialize = lambda o: b"x"
        m.deserialize = lambda b: 1
        p = plan(app(), module=m)
        self.assertIs(p[2], m.serialize)
        self.assertIs(p[3], m.deserialize)
        del m.deserialize
        with self.assertRaisesRegex(wallaroo.WallarooParameterError, "without deserialize"):
            plan(app(), module=m)

    def test_class_based_objects(self):
        class Reverse(object):  # 0.1-0.3: a class with name() and compute
            def name(self):
                return "reverse"

            def compute(self, data):
                return data[::-1]

        class LittleDecoder(object):
            def header_length(self):
                return 2

            def payload_length(self, bs):
                return struct.unpack("<H", bs)[0]

            def decode(self, bs):
                return bs

        class Enc(object):
            def encode(self, data):
                return data

        ab = app(("to", Reverse), src=wallaroo.TCPSourceConfig("127.0.0.1", "7010",
                                                               LittleDecoder()),
                 sink=wallaroo.TCPSinkConfig("127.0.0.1", "7002", Enc()))
        (pname, hlen, little, dec, steps, (enc,)), = plan(ab)[4]
        self.assertEqual((hlen, little), (2, True))
        self.assertEqual(steps[0][1], "reverse")
        self.assertEqual(steps[0][2]("abc"), "cba")
        self.assertEqual(enc(b"q"), b"q")


class Helpers(unittest.TestCase):
    def test_tcp_parse_addrs(self):
        self.assertEqual(wallaroo.tcp_parse_input_addrs(["p", "--in", "a:1,b:2"]),
                         [("a", "1"), ("b", "2")])
        self.assertEqual(wallaroo.tcp_parse_input_addrs(["p", "--in=h:7"]), [("h", "7")])
        self.assertEqual(wallaroo.tcp_parse_output_addrs(["p", "-o", "h:8", "--ponythreads=1"]),
                         [("h", "8")])
        self.assertEqual(wallaroo.tcp_parse_input_addrs(["p"]), [("127.0.0.1", "7010")])
        self.assertEqual(wallaroo.tcp_parse_output_addrs(["p"]), [("127.0.0.1", "7002")])
        with self.assertRaises(wallaroo.WallarooParameterError):
            wallaroo.tcp_parse_input_addrs(["p", "--in", "nohost"])

    def test_state_json(self):
        class Votes(object):
            def __init__(self, letter, votes):
                self.letter = letter
                self.votes = votes

        class AllVotes(object):
            def __init__(self):
                self.votes_by_letter = {b"a": Votes(b"a", 3)}

        self.assertEqual(wallaroo._roo_state_json(AllVotes()),
                         '{"votes_by_letter": {"a": {"letter": "a", "votes": 3}}}')
        self.assertEqual(wallaroo._roo_state_json(7), "7")
        self.assertEqual(wallaroo._roo_state_json({1: b"\xff"}), '{"1": "\\\\xff"}')

    def test_repr_never_raises(self):
        class Bad(object):
            def __repr__(self):
                raise RuntimeError("no")

        self.assertIn("repr failed", wallaroo._roo_repr(Bad()))
        self.assertEqual(len(wallaroo._roo_repr("x" * 1000)), 200)


if __name__ == "__main__":
    unittest.main(verbosity=1)
