# wallaroo.py: Wallaroo's Python API (the 0.4-0.5 decorators, and the class-based objects of
# 0.1-0.3) for applications that run on roo-python.
#
# roo-python compiles this file into its binary and registers it as the module `wallaroo`
# before it imports the application, so `import wallaroo` needs no installation. The module
# only describes an application: ApplicationBuilder.build() returns Wallaroo's list of action
# tuples (as machida walked it), and roo-python turns that list, through _roo_plan() below,
# into a roo application whose steps call the user's functions from C.
"""Wallaroo's Python API on roo: describe an application, roo-python runs it."""

import argparse
import functools
import inspect
import json
import pickle
import re
import struct
import sys
import traceback

__all__ = [
    "ApplicationBuilder", "TCPSourceConfig", "TCPSinkConfig", "WallarooParameterError",
    "computation", "computation_multi", "state_computation", "state_computation_multi",
    "partition", "decoder", "encoder", "tcp_parse_input_addrs", "tcp_parse_output_addrs",
    "serialize", "deserialize",
]

# The addresses roo uses when --in or --out is not given (src/worker/config.h).
_ROO_DEFAULT_IN = "127.0.0.1:7010"
_ROO_DEFAULT_OUT = "127.0.0.1:7002"


class WallarooParameterError(Exception):
    """The application's description cannot run: raised by the builder and at set-up."""


def serialize(o):
    """Bytes for a state object or a message (used unless the application module defines
    its own module-level serialize/deserialize, as Wallaroo allowed)."""
    return pickle.dumps(o, pickle.HIGHEST_PROTOCOL)


def deserialize(bs):
    """The object that serialize() turned into bs."""
    return pickle.loads(bs)


# ---- decorators ---------------------------------------------------------------------------
#
# Each decorator returns an object with the methods machida looked up by name (name(),
# compute, compute_multi, partition, decode, encode...), so that hand-written objects of the
# class-based API and decorated functions are treated alike. `_roo_fn` is the user's
# function itself: roo-python calls it directly, without a method call in between.


def _check_arity(what, fn, n):
    if not callable(fn):
        raise WallarooParameterError("%s: expected a function, got %r" % (what, fn))
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or an extension function: nothing to check
    try:
        sig.bind(*range(n))
    except TypeError:
        raise WallarooParameterError(
            "%s: %s%s must take %d argument%s" % (what, getattr(fn, "__name__", "function"),
                                                  sig, n, "" if n == 1 else "s")) from None


class _Wrapped(object):
    """A decorated function: calling it calls the function (handy in unit tests)."""

    def __init__(self, fn, name):
        self._roo_fn = fn
        self._roo_name = name
        functools.update_wrapper(self, fn)

    def name(self):
        return self._roo_name

    def __call__(self, *args):
        return self._roo_fn(*args)

    def __repr__(self):
        return "<wallaroo %s %r>" % (type(self).__name__.lstrip("_").lower(), self._roo_name)


class _Computation(_Wrapped):
    _roo_multi = False

    def compute(self, data):
        return self._roo_fn(data)


class _ComputationMulti(_Wrapped):
    _roo_multi = True

    def compute_multi(self, data):
        return self._roo_fn(data)


class _StateComputation(_Wrapped):
    _roo_multi = False

    def compute(self, data, state):
        return self._roo_fn(data, state)


class _StateComputationMulti(_Wrapped):
    _roo_multi = True

    def compute_multi(self, data, state):
        return self._roo_fn(data, state)


class _Partition(_Wrapped):
    def partition(self, data):
        return self._roo_fn(data)


class _Encoder(_Wrapped):
    def encode(self, data):
        return self._roo_fn(data)


class _Decoder(_Wrapped):
    def __init__(self, fn, header_length, length_fmt):
        _Wrapped.__init__(self, fn, fn.__name__)
        self._roo_header = _length_header(header_length, length_fmt)
        self._length_fmt = length_fmt

    def header_length(self):
        return self._roo_header[0]

    def payload_length(self, bs):
        return struct.unpack(self._length_fmt, bs)[0]

    def decode(self, bs):
        return self._roo_fn(bs)


def _step_decorator(cls, name, state):
    def wrap(fn):
        _check_arity("%s %r" % (cls.__name__.lstrip("_"), name), fn,
                     2 if cls in (_StateComputation, _StateComputationMulti) else 1)
        return cls(fn, name)
    if callable(name) and not isinstance(name, str):
        # Used bare (@computation instead of @computation(name=...)): name it after the function.
        fn, name = name, name.__name__
        return wrap(fn)
    if not isinstance(name, str) or not name:
        raise WallarooParameterError("a step's name must be a non-empty string, not %r" % (name,))
    return wrap


def computation(name):
    """@computation(name=...): f(data) -> output, or None to drop the message."""
    return _step_decorator(_Computation, name, None)


def computation_multi(name):
    """@computation_multi(name=...): f(data) -> a list of outputs (None elements skipped)."""
    return _step_decorator(_ComputationMulti, name, None)


def state_computation(name, state=None):
    """@state_computation(name=...): f(data, state) -> (output or None, save?)."""
    return _step_decorator(_StateComputation, name, state)


def state_computation_multi(name, state=None):
    """@state_computation_multi(name=...): f(data, state) -> (list of outputs, save?)."""
    return _step_decorator(_StateComputationMulti, name, state)


def partition(fn):
    """@partition: f(data) -> the key (str, bytes, or an int that stands for a character)."""
    _check_arity("partition", fn, 1)
    return _Partition(fn, fn.__name__)


def encoder(fn):
    """@encoder: f(data) -> the bytes (or str, sent as UTF-8) to write, or None for nothing."""
    _check_arity("encoder", fn, 1)
    return _Encoder(fn, fn.__name__)


_LENGTH_FMT = re.compile(r"^([@=<>!]?)([BbHhIiLlQq])$")


def _length_header(header_length, length_fmt):
    """(bytes, little_endian) of a frame's length header, from the decoder's arguments."""
    m = _LENGTH_FMT.match(length_fmt) if isinstance(length_fmt, str) else None
    if not m:
        raise WallarooParameterError(
            "decoder: length_fmt %r is not one struct code for an unsigned length, like '>I'"
            % (length_fmt,))
    size = struct.calcsize(length_fmt)
    if header_length != size:
        raise WallarooParameterError(
            "decoder: header_length %r does not match length_fmt %r (%d bytes)"
            % (header_length, length_fmt, size))
    if size not in (1, 2, 4, 8):
        raise WallarooParameterError("decoder: a length header has 1, 2, 4 or 8 bytes")
    order = m.group(1)
    little = order == "<" or (order in ("", "@", "=") and sys.byteorder == "little")
    return (size, little)


def decoder(header_length, length_fmt):
    """@decoder(header_length=4, length_fmt=">I"): f(payload bytes) -> message, or None."""
    header = _length_header(header_length, length_fmt)

    def wrap(fn):
        _check_arity("decoder", fn, 1)
        d = _Decoder(fn, header[0], length_fmt)
        return d
    return wrap


# ---- sources, sinks, builder --------------------------------------------------------------


class TCPSourceConfig(object):
    def __init__(self, host, port, decoder):
        self._host = host
        self._port = port
        self._decoder = decoder

    def to_tuple(self):
        return ("tcp", self._host, self._port, self._decoder)


class TCPSinkConfig(object):
    def __init__(self, host, port, encoder):
        self._host = host
        self._port = port
        self._encoder = encoder

    def to_tuple(self):
        return ("tcp", self._host, self._port, self._encoder)


class _Unsupported(object):
    """Kafka, generator and connector configs: accepted by the builder, refused at set-up."""
    _roo_kind = "?"

    def __init__(self, *args, **kwargs):
        self._args = args

    def to_tuple(self):
        return (self._roo_kind,) + tuple(self._args)


class KafkaSourceConfig(_Unsupported):
    _roo_kind = "kafka"


class KafkaSinkConfig(_Unsupported):
    _roo_kind = "kafka"


class CustomKafkaSourceCLIParser(_Unsupported):
    _roo_kind = "kafka"


class CustomKafkaSinkCLIParser(_Unsupported):
    _roo_kind = "kafka"


class DefaultKafkaSourceCLIParser(_Unsupported):
    _roo_kind = "kafka"


class DefaultKafkaSinkCLIParser(_Unsupported):
    _roo_kind = "kafka"


class GenSourceConfig(_Unsupported):
    _roo_kind = "gen"


class StateBuilder(object):
    """Makes a fresh state object for a key (Wallaroo's name for it)."""

    def __init__(self, name, state_cls):
        self._name = name
        self.state_cls = state_cls

    def ____wallaroo_build____(self):
        return self.state_cls()

    def name(self):
        return self._name


class ApplicationBuilder(object):
    """ApplicationBuilder(name).new_pipeline(...).to(...).to_sink(...).build()."""

    def __init__(self, name):
        self._actions = [("name", name)]

    def new_pipeline(self, name, source_config):
        if isinstance(source_config, str):
            raise WallarooParameterError(
                "new_pipeline(%r, %r): connectors are not supported by roo-python; use "
                "TCPSourceConfig" % (name, source_config))
        self._actions.append(("new_pipeline", name, source_config.to_tuple()))
        return self

    def to(self, computation):
        self._actions.append(("to", computation))
        return self

    def to_parallel(self, computation):
        self._actions.append(("to_parallel", computation))
        return self

    def to_stateful(self, computation, state_class, state_name):
        self._actions.append(("to_stateful", computation, StateBuilder(state_name, state_class),
                              state_name))
        return self

    def to_state_partition(self, computation, state_class, state_name, partition_function,
                           partition_keys=None):
        self._actions.append(("to_state_partition", computation,
                              StateBuilder(state_name, state_class), state_name,
                              partition_function, partition_keys or []))
        return self

    def to_state_partition_u64(self, computation, state_class, state_name, partition_function,
                               partition_keys=None):
        self._actions.append(("to_state_partition_u64", computation,
                              StateBuilder(state_name, state_class), state_name,
                              partition_function, partition_keys or []))
        return self

    def to_sink(self, sink_config):
        if isinstance(sink_config, str):
            raise WallarooParameterError(
                "to_sink(%r): connectors are not supported by roo-python; use TCPSinkConfig"
                % (sink_config,))
        self._actions.append(("to_sink", sink_config.to_tuple()))
        return self

    def to_sinks(self, sink_configs):
        self._actions.append(("to_sinks", [c.to_tuple() for c in sink_configs]))
        return self

    def source_connector(self, name, *args, **kwargs):
        raise WallarooParameterError("source_connector(%r): connectors are not supported by "
                                     "roo-python" % (name,))

    def sink_connector(self, name, *args, **kwargs):
        raise WallarooParameterError("sink_connector(%r): connectors are not supported by "
                                     "roo-python" % (name,))

    def done(self):
        self._actions.append(("done",))
        return self

    def build(self):
        _roo_walk(self._actions)  # the same checks as at set-up, raised where the user calls
        return self._actions


def _parse_addrs(args, short, long, what, default):
    parser = argparse.ArgumentParser(prog="wallaroo", add_help=False)
    parser.add_argument(short, long, dest="addrs")
    addrs = parser.parse_known_args([a for a in args if isinstance(a, str)])[0].addrs
    if addrs is None:
        addrs = default
    out = []
    for a in addrs.split(","):
        host, sep, port = a.rpartition(":")
        if not sep or not host or not port:
            raise WallarooParameterError("%s: %r is not HOST:PORT" % (what, a))
        out.append((host, port))
    return out


def tcp_parse_input_addrs(args):
    """[(host, port)] of --in (roo's default when absent), ports as strings like Wallaroo's."""
    return _parse_addrs(args, "-i", "--in", "--in", _ROO_DEFAULT_IN)


def tcp_parse_output_addrs(args):
    """[(host, port)] of --out (roo's default when absent)."""
    return _parse_addrs(args, "-o", "--out", "--out", _ROO_DEFAULT_OUT)


def kafka_parse_source_options(args):
    raise WallarooParameterError("Kafka sources are not supported by roo-python")


def kafka_parse_sink_options(args):
    raise WallarooParameterError("Kafka sinks are not supported by roo-python")


# ---- what roo-python reads ----------------------------------------------------------------
#
# _roo_plan(result of application_setup, args, module) checks the description and returns
# it in the plain shape the C side walks:
#
#   (app_name, [warning, ...], serialize, deserialize, [pipeline, ...]); serialize and
#   deserialize are the module's own, or _roo_dumps and _roo_loads (pickle)
#   pipeline = (name, header_len, little_endian, decode_fn, [step, ...], [encode_fn, ...])
#              one encoder per sink (to_sinks: several, each the next --out address)
#   step     = (kind, name, fn, multi, state_name, state_label, state_factory, key_fn)
#              kind: 0 stateless, 1 to_stateful (one state object), 2 to_state_partition,
#                    3 to_state_partition_u64; the state fields are None for kind 0


def _sanitize(name, what):
    """roo's names are 1-64 of [A-Za-z0-9_.-]; Wallaroo's may hold spaces ("Reverse Word")."""
    if not isinstance(name, str) or not name:
        raise WallarooParameterError("%s must be a non-empty string, not %r" % (what, name))
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]


def _instance(obj):
    # 0.3 passed classes and machida instantiated them.
    return obj() if inspect.isclass(obj) else obj


def _step_name(obj, default):
    n = getattr(obj, "name", None)
    if callable(n):
        n = n()
    if isinstance(n, str) and n:
        return n
    return getattr(obj, "__name__", default)


def _stateless_fn(c):
    c = _instance(c)
    if hasattr(c, "_roo_fn") and hasattr(c, "_roo_multi") and not isinstance(
            c, (_StateComputation, _StateComputationMulti)):
        return c._roo_fn, c._roo_multi, c
    if isinstance(c, (_StateComputation, _StateComputationMulti)):
        raise WallarooParameterError("%r is a state computation: use to_stateful or "
                                     "to_state_partition" % (c,))
    if hasattr(c, "compute_multi"):
        return c.compute_multi, True, c
    if hasattr(c, "compute"):
        return c.compute, False, c
    if callable(c):
        return c, False, c
    raise WallarooParameterError("to(%r): not a computation (decorate it with "
                                 "@wallaroo.computation)" % (c,))


def _state_fn(c):
    c = _instance(c)
    if isinstance(c, (_StateComputation, _StateComputationMulti)):
        return c._roo_fn, c._roo_multi, c
    if isinstance(c, (_Computation, _ComputationMulti)):
        raise WallarooParameterError("%r is a stateless computation: use to()" % (c,))
    if hasattr(c, "compute_multi"):
        return c.compute_multi, True, c
    if hasattr(c, "compute"):
        return c.compute, False, c
    if callable(c):
        return c, False, c
    raise WallarooParameterError("%r: not a state computation (decorate it with "
                                 "@wallaroo.state_computation)" % (c,))


def _state_factory(sb):
    """(a zero-argument callable that makes a state object, the class for identity checks)."""
    if isinstance(sb, StateBuilder):
        return sb.____wallaroo_build____, sb.state_cls
    if inspect.isclass(sb):
        return sb, sb
    for attr in ("____wallaroo_build____", "build"):
        f = getattr(sb, attr, None)
        if callable(f):
            return f, sb
    if callable(sb):
        return sb, sb
    raise WallarooParameterError("%r cannot build a state object (give the state class)" % (sb,))


def _key_fn(pf):
    pf = _instance(pf)
    if isinstance(pf, _Partition):
        return pf._roo_fn
    f = getattr(pf, "partition", None)
    if callable(f):
        return f
    if callable(pf):
        return pf
    raise WallarooParameterError("%r is not a partition function (decorate it with "
                                 "@wallaroo.partition)" % (pf,))


def _decoder_of(d):
    d = _instance(d)
    if isinstance(d, _Decoder):
        return d._roo_header[0], d._roo_header[1], d._roo_fn
    hl, pl, dec = (getattr(d, a, None) for a in ("header_length", "payload_length", "decode"))
    if not (callable(hl) and callable(pl) and callable(dec)):
        raise WallarooParameterError("%r is not a decoder (decorate it with @wallaroo.decoder)"
                                     % (d,))
    n = hl()
    if n not in (1, 2, 4, 8):
        raise WallarooParameterError("decoder %r: header_length() is %r; roo reads 1, 2, 4 or 8 "
                                     "byte length headers" % (d, n))
    # A class-based decoder computes lengths in Python; ask it once which byte order it reads.
    probe = pl(b"\x00" * (n - 1) + b"\x01")
    if probe == 1:
        little = False
    elif probe == 1 << (8 * (n - 1)):
        little = True
    else:
        raise WallarooParameterError("decoder %r: payload_length() is not a plain unsigned "
                                     "length; roo cannot frame it" % (d,))
    return n, little, dec


def _encoder_of(e):
    e = _instance(e)
    if isinstance(e, _Encoder):
        return e._roo_fn
    f = getattr(e, "encode", None)
    if callable(f):
        return f
    if callable(e):
        return e
    raise WallarooParameterError("%r is not an encoder (decorate it with @wallaroo.encoder)"
                                 % (e,))


def _config_tuple(cfg, what):
    if hasattr(cfg, "to_tuple"):
        cfg = cfg.to_tuple()
    if not isinstance(cfg, tuple) or not cfg:
        raise WallarooParameterError("%s: %r is not a source or sink config" % (what, cfg))
    kind = cfg[0]
    if kind in ("kafka", "gen"):
        raise WallarooParameterError(
            "%s: %s %s are not supported by roo-python; use TCPSourceConfig/TCPSinkConfig"
            % (what, "Kafka" if kind == "kafka" else "generator",
               "sources" if "source" in what or "pipeline" in what else "sinks"))
    if kind != "tcp" or len(cfg) != 4:
        raise WallarooParameterError("%s: %r is not a TCP config" % (what, cfg))
    return cfg


def _roo_walk(actions):
    """Check the action list; return (app name, [(pipeline name, source tuple, steps,
    sink tuple)]) with each step (op, computation, state builder, state name, pf)."""
    if isinstance(actions, ApplicationBuilder):
        actions = actions._actions
    if not isinstance(actions, (list, tuple)):
        raise WallarooParameterError("application_setup must return ApplicationBuilder's "
                                     "build(), not %r" % (actions,))
    name = None
    pipelines = []
    cur = None
    for a in actions:
        if not isinstance(a, (tuple, list)) or not a:
            raise WallarooParameterError("%r is not an application action" % (a,))
        op = a[0]
        if op == "name":
            name = a[1]
        elif op == "new_pipeline":
            if cur is not None and cur[3] is None:
                raise WallarooParameterError("pipeline %r has no sink before new_pipeline(%r)"
                                             % (cur[0], a[1]))
            cur = [a[1], _config_tuple(a[2], "new_pipeline(%r)" % (a[1],)), [], None]
            pipelines.append(cur)
        elif op in ("to", "to_parallel", "to_stateful", "to_state_partition",
                    "to_state_partition_u64", "to_sink", "to_sinks", "done"):
            if cur is None:
                raise WallarooParameterError("%s before any new_pipeline" % (op,))
            if cur[3] is not None and op != "done":
                raise WallarooParameterError("pipeline %r: %s after its sink (start another "
                                             "with new_pipeline)" % (cur[0], op))
            if op in ("to", "to_parallel"):
                cur[2].append((op, a[1], None, None, None))
            elif op == "to_stateful":
                cur[2].append((op, a[1], a[2], a[3], None))
            elif op in ("to_state_partition", "to_state_partition_u64"):
                keys = a[5] if len(a) > 5 else []
                if keys is not None and not isinstance(keys, (list, tuple, set, range)):
                    raise WallarooParameterError("%s %r: partition_keys must be a list"
                                                 % (op, a[3]))
                cur[2].append((op, a[1], a[2], a[3], a[4]))
            elif op == "to_sink":
                cur[3] = [_config_tuple(a[1], "to_sink")]
            elif op == "to_sinks":
                sinks = list(a[1])
                if not sinks or len(sinks) > 64:
                    raise WallarooParameterError(
                        "pipeline %r: to_sinks takes 1 to 64 sink configs, not %d"
                        % (cur[0], len(sinks)))
                cur[3] = [_config_tuple(c, "to_sinks") for c in sinks]
            elif op == "done":
                if cur[3] is None:
                    raise WallarooParameterError("pipeline %r ends (done) without a sink: roo "
                                                 "pipelines end in to_sink" % (cur[0],))
                cur = None
        else:
            raise WallarooParameterError("unknown application action %r" % (op,))
    if name is None:
        raise WallarooParameterError("the application has no name (ApplicationBuilder(name))")
    if not pipelines:
        raise WallarooParameterError("application %r has no pipeline" % (name,))
    for p in pipelines:
        if p[3] is None:
            raise WallarooParameterError("pipeline %r has no sink (to_sink)" % (p[0],))
    return name, pipelines


def _roo_plan(result, args, module):
    name, pipelines = _roo_walk(result)
    warnings = []
    ser = getattr(module, "serialize", None)
    deser = getattr(module, "deserialize", None)
    if callable(ser) != callable(deser):
        raise WallarooParameterError("the module defines %s without %s: define both or neither"
                                     % (("serialize", "deserialize") if callable(ser)
                                        else ("deserialize", "serialize")))
    if not callable(ser):
        ser, deser = _roo_dumps, _roo_loads
    app_name = _sanitize(name, "the application's name")
    ins = tcp_parse_input_addrs(args)
    outs = tcp_parse_output_addrs(args)
    states = {}  # roo state name -> (Wallaroo name, state class)
    plan = []
    nsinks = 0  # sinks so far: sink j of the application takes --out's j-th address
    for i, (pname, src, steps, sinks) in enumerate(pipelines):
        if not isinstance(pname, str) or not pname:
            raise WallarooParameterError("a pipeline's name must be a non-empty string, not %r"
                                         % (pname,))
        hlen, little, dec = _decoder_of(src[3])
        encs = [_encoder_of(sink[3]) for sink in sinks]
        checks = [("source", src, ins, "--in", i)]
        checks += [("sink", sink, outs, "--out", nsinks + j) for j, sink in enumerate(sinks)]
        nsinks += len(sinks)
        for what, cfg, addrs, flag, k in checks:
            want = (str(cfg[1]), str(cfg[2]))
            if k >= len(addrs):
                continue  # the worker itself says that its flag lacks an address
            if want != addrs[k]:
                warnings.append("pipeline '%s': its %s config says %s:%s but %s gives %s:%s; roo "
                                "uses %s" % (pname, what, want[0], want[1], flag, addrs[k][0],
                                             addrs[k][1], flag))
        out_steps = []
        for op, c, sb, sname, pf in steps:
            if op in ("to", "to_parallel"):
                fn, multi, obj = _stateless_fn(c)
                out_steps.append((0, _step_name(obj, "computation"), fn, multi, None, None, None,
                                  None))
                continue
            fn, multi, obj = _state_fn(c)
            factory, cls = _state_factory(sb)
            sid = _sanitize(sname, "a state's name")
            seen = states.get(sid)
            if seen is not None and seen[0] != sname:
                raise WallarooParameterError("state names %r and %r are the same to roo (%r); "
                                             "rename one" % (seen[0], sname, sid))
            if seen is not None and seen[1] is not cls:
                raise WallarooParameterError("state %r is used with two state classes (%r and %r)"
                                             % (sname, seen[1], cls))
            states[sid] = (sname, cls)
            kind = {"to_stateful": 1, "to_state_partition": 2, "to_state_partition_u64": 3}[op]
            key = _key_fn(pf) if kind != 1 else None
            out_steps.append((kind, _step_name(obj, "state computation"), fn, multi, sid, sname,
                              factory, key))
        plan.append((pname, hlen, little, dec, out_steps, encs))
    return (app_name, warnings, ser, deser, plan)


_pickle_dumps, _pickle_loads, _PROTOCOL = pickle.dumps, pickle.loads, pickle.HIGHEST_PROTOCOL


# roo-python calls these rather than pickle.dumps/loads themselves: pickle imports the module
# of every class it meets, and an import called from C with no Python frame running looks up
# `builtins` again each time, which made a round trip of a small object half as fast again.
def _roo_dumps(o):
    return _pickle_dumps(o, _PROTOCOL)


def _roo_loads(bs):
    return _pickle_loads(bs)


def _roo_repr(obj, limit=200):
    """A short repr for a log line; never raises."""
    try:
        r = repr(obj)
    except Exception as e:  # a user __repr__ may fail too
        r = "<%s; repr failed: %s>" % (type(obj).__name__, type(e).__name__)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _roo_traceback(exc):
    """The traceback of exc as text, without roo-python's own frames (there are none)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def _jsonable(o, depth=0):
    if depth > 20:
        return repr(o)
    if o is None or isinstance(o, (bool, int, float, str)):
        return o
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).decode("utf-8", "backslashreplace")
    if isinstance(o, dict):
        return {(k if isinstance(k, str) else str(_jsonable(k, depth + 1))): _jsonable(v, depth + 1)
                for k, v in o.items()}
    if isinstance(o, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in o]
    d = getattr(o, "__dict__", None)
    if isinstance(d, dict):
        return _jsonable(d, depth + 1)
    slots = getattr(type(o), "__slots__", None)
    if slots:
        names = [slots] if isinstance(slots, str) else list(slots)
        return {n: _jsonable(getattr(o, n, None), depth + 1) for n in names}
    return repr(o)


def _roo_state_json(state):
    """A state object as JSON text for roo-ctl query: its attributes, bytes as text."""
    return json.dumps(_jsonable(state), sort_keys=True)
