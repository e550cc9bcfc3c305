"""Reading an encoder file without trusting it: what :func:`iqabench.models.encoders.load` checks.

A file given as ``file:PATH`` (``iqabench score --model``, params.yaml ``models:``, fine-tuning) may be
anything: truncated, a text file, a pickle of any protocol, an iqabench file whose config was edited, the state
dict of another network. Each is refused with one line that names the file, what is wrong and what to do (they
were tracebacks: ``Encoder.__init__() got an unexpected keyword argument``, ``size mismatch for ...``), and:

* nothing in the file is executed: it is read by :func:`iqabench.io.read_torch` (weights only), and a pickle
  that reader refuses is only *parsed* (:mod:`pickletools`, which never builds an object) to say what it is;
* a config is checked before a network is built from it (``width: 2**40`` asked for terabytes);
* on a valid file the weights load exactly as before: ``load_state_dict`` runs first, and the tensors are
  compared with the network's only when it fails, to say which ones differ.
"""
from __future__ import annotations

import io as _bytes_io
import pickletools
import warnings
import zipfile

import torch

from .. import io

# An encoder file's config: Encoder's keyword arguments. The width limit is params.yaml's for `pretrain` (its
# schema's MAX_WIDTH, which tests/test_checkpoint_files.py keeps equal): small_cnn's last stage has 8 x width
# channels, so 2**40 asked for ~10^26 bytes before anything said the value was wrong.
CONFIG_KEYS = ("arch", "width")
MAX_WIDTH = 1024
EXPECTED = ("Expected: an iqabench encoder file, a torchvision ResNet state dict, CONTRIQUE_checkpoint25.tar, "
            "ARNIQA.pth or Re-IQA's quality_aware_r50.pth / content_aware_r50.pth")
FULL_PICKLE_ADVICE = ("Full pickles are not loaded (they can run code); save its state dict alone "
                      "(torch.save(model.state_dict(), 'weights.pth') in the code that made it) and give that.")
# torch.save's legacy (pre-1.6, non-zip) format starts with this number, pickled.
TORCH_MAGIC = 0x1950A86A20F9469CFC6C
# How much of a file is parsed to tell a pickle from other bytes: a pickle that ends (STOP) in it, or fills it
# with valid opcodes, is one. Random or text bytes hit an unknown opcode within a few bytes.
PICKLE_PROBE_BYTES = 256 * 1024
PICKLE_MIN_OPCODES = 16
# Imports a pickled state dict makes (tensors, OrderedDict, bytes in protocol 0): not named as what it asks for.
STATE_DICT_GLOBALS = ("torch.", "collections.OrderedDict", "builtins.", "_codecs.encode")


def short(value, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a config may hold a list of a million items."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...)"


def is_torch_file(path) -> bool:
    """Whether ``path`` is laid out as torch.save writes: a whole zip archive (torch >= 1.6) or a pickle
    (protocol 2+ starts with 0x80: the legacy format). Only such a file can be an unsafe pickle."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return archive.testzip() is None
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"
    except (OSError, zipfile.BadZipFile):
        return False


def pickle_kind(path) -> str | None:
    """What kind of pickle ``path`` is, when it is one that torch's weights-only reader refuses without saying
    so: protocol 0 or 1 (text-era opcodes, which it does not read at all; the first byte is not 0x80), or a
    stream written by ``pickle.dump`` rather than ``torch.save`` (torch reads "Invalid magic number"). None for
    anything else (a zip archive, torch.save's legacy format with protocol 2+, bytes that are no pickle).

    Only parsed by :func:`pickletools.genops`, which decodes opcodes and never builds an object or imports."""
    try:
        if zipfile.is_zipfile(path):
            return None
        with open(path, "rb") as fh:
            head = fh.read(PICKLE_PROBE_BYTES)
    except OSError:
        return None
    stream, ops, ended = _bytes_io.BytesIO(head), [], False
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            ops.append((opcode, arg))
        ended = True  # genops returns after STOP
    except Exception:  # noqa: BLE001 - any malformed opcode or argument: where it stopped is what counts
        pass
    filled = len(head) == PICKLE_PROBE_BYTES and stream.tell() >= len(head) and len(ops) >= PICKLE_MIN_OPCODES
    if not ops or not (ended or filled):
        return None
    protocol = max(opcode.proto for opcode, _ in ops)
    values = [arg for opcode, arg in ops if opcode.name not in ("PROTO", "FRAME", "STOP")]
    legacy_torch = ended and values == [TORCH_MAGIC]
    if legacy_torch and head[:1] == b"\x80":
        return None  # torch.save's own legacy format: torch's error (and io.read_torch's) says what it asks for
    # Protocol 1 added opcodes but a protocol-1 pickle may use none of them: "0 or 1" is all the bytes say.
    protocol = f"protocol {protocol}" if protocol >= 2 else "protocol 0 or 1"
    if legacy_torch:
        return f"torch.save's legacy format with pickle {protocol}, which the weights-only reader does not read"
    # The first import it asks for that is not one a state dict needs: what would run when it is unpickled.
    asked = [str(arg).replace(" ", ".") for opcode, arg in ops if opcode.name in ("GLOBAL", "INST")]
    asked = [name for name in asked if not name.startswith(STATE_DICT_GLOBALS)]
    return f"a pickle ({protocol}) written by pickle.dump rather than torch.save" + (
        f", asking for {asked[0]}" if asked else "")


def _first_line(err: BaseException) -> str:
    """``Type: first line`` of an error, never torch's advice to retry with ``weights_only=False``: the retry
    is what runs code from the file."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else "no data"
    if "weights_only" in text or "Weights only" in text:
        line = "not what torch.save writes"
    return f"{err.__class__.__name__}: {line}"


def read(path, map_location, *, restore: str, made_by: str | None = None):
    """The objects in an encoder file, read weights-only; else one-line FileNotFoundError / ValueError.

    ``restore``: how to get the file back when its bytes are damaged (a pipeline output: `dvc checkout`);
    ``made_by``: the command that makes a pipeline output that is absent."""
    try:
        with warnings.catch_warnings():  # a protocol-4 file: torch asks the user to "file an issue"; it is read
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return io.read_torch(path, map_location=map_location)
    except FileNotFoundError:
        if made_by:
            raise FileNotFoundError(f"{path}: no such encoder file; it is made by `{made_by}` (or fetched by "
                                    "`dvc pull` where a DVC remote holds it)") from None
        raise FileNotFoundError(f"{path}: no such encoder file; check the path after 'file:', or put the "
                                "authors' file there for a *-published row (docs/reproduce.md)") from None
    except Exception as exc:  # torch raises several types for non-checkpoint or pickled-object files
        pickled = pickle_kind(path)
        if pickled is None and not (isinstance(exc, io.UnsafePickleError) and is_torch_file(path)):
            # Truncated, emptied, a text file: advice about pickles would send the user the wrong way.
            # io.read_torch calls any unpickling failure unsafe; torch's own error says what the bytes were.
            cause = exc.__context__ if isinstance(exc, io.UnsafePickleError) and exc.__context__ else exc
            reason = _first_line(cause)
            if reason.endswith(": not what torch.save writes"):
                reason += f" (it starts with {_head(path)})"
            raise ValueError(f"{path} is corrupt or not a torch checkpoint ({reason}): {restore}. {EXPECTED}") from exc
        # A full pickle can run code when loaded, so it is refused; its tensors can be saved on their own.
        reason = f"refused to load: {pickled}" if pickled else _first_line(exc)
        raise ValueError(f"{path}: cannot be read as a weights-only torch checkpoint ({reason}). "
                         f"{FULL_PICKLE_ADVICE} {EXPECTED}") from exc


def _head(path, size: int = 16) -> str:
    try:
        with open(path, "rb") as fh:
            return repr(fh.read(size))
    except OSError:
        return "unreadable bytes"


def check_config(config, path, archs: tuple[str, ...], fix: str) -> dict:
    """An iqabench encoder file's ``config`` as Encoder's keyword arguments, checked before anything is built:
    a mapping of :data:`CONFIG_KEYS`, ``arch`` one of ``archs``, ``width`` an integer in [1, MAX_WIDTH]."""
    problem = None
    if not isinstance(config, dict):
        problem = f"it is a {type(config).__name__}, not a mapping of {list(CONFIG_KEYS)}"
    elif unknown := [k for k in config if k not in CONFIG_KEYS]:
        problem = f"{short(unknown[0])} is not a known key; an encoder's config has {list(CONFIG_KEYS)}"
    elif "arch" in config and (not isinstance(config["arch"], str) or config["arch"] not in archs):
        problem = f"arch = {short(config['arch'])} is not an encoder architecture; it must be one of {list(archs)}"
    elif "width" in config and (type(config["width"]) is not int or not 1 <= config["width"] <= MAX_WIDTH):
        problem = f"width = {short(config['width'])} is not allowed; it must be an integer in [1, {MAX_WIDTH}]"
    if problem:
        raise ValueError(f"{path}: its encoder config {short(config)} cannot be built: {problem}. {fix}")
    return dict(config)


def load_weights(module, state, path, what: str, fix: str, *, strict: bool = True) -> None:
    """``module.load_state_dict(state, strict)``, or a one-line ValueError ``PATH: weights do not fit WHAT:
    <first mismatches>. FIX``. Missing or unexpected keys are refused with ``strict=False`` too (shapes are
    always checked by torch); the state is compared with the module's only after torch refused it."""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    problems = _not_tensors(state)
    if not problems:
        try:
            result = module.load_state_dict(state, strict=strict)
        except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
            # A state saved with its _metadata may need num_batches_tracked, which torch otherwise fills in.
            problems = (mismatches(expected, state) or mismatches(expected, state, lenient=False)
                        or [f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"])
        else:
            if result.missing_keys or result.unexpected_keys:
                problems = mismatches(expected, state, ignore_missing=set(expected) - set(result.missing_keys))
    if problems:
        more = f"; and {len(problems) - 3} more mismatch(es)" if len(problems) > 3 else ""
        raise ValueError(f"{path}: weights do not fit {what}: {'; '.join(problems[:3])}{more}. {fix}")


def _not_tensors(state) -> list[str]:
    if not isinstance(state, dict):
        return [f"its state_dict is of type {type(state).__name__} ({short(state, 30)}), not a mapping of names "
                "to tensors"]
    return [f"{short(key, 50)} is of type {type(value).__name__}, not a tensor" for key, value in state.items()
            if not isinstance(key, str) or not isinstance(value, torch.Tensor)]


def mismatches(expected: dict[str, tuple], state: dict, ignore_missing=frozenset(),
               lenient: bool = True) -> list[str]:
    """The tensors of ``state`` that differ from ``expected`` (name -> shape): wrong shapes first (transposed,
    another width), then missing and unexpected names. ``lenient``: BatchNorm's ``num_batches_tracked`` may be
    absent (torch fills it in, unless the state carries ``_metadata`` of a newer BatchNorm)."""
    shapes = [f"{key} is {tuple(state[key].shape)} in the file, {shape} in the network"
              for key, shape in expected.items() if key in state and tuple(state[key].shape) != shape]
    missing = [key for key in expected if key not in state and key not in ignore_missing
               and not (lenient and key.endswith("num_batches_tracked"))]
    unexpected = [key for key in state if key not in expected]
    found = shapes
    if missing:
        found.append(f"missing {', '.join(missing[:3])}"
                     + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    if unexpected:
        found.append(f"unexpected {', '.join(short(k, 50) for k in unexpected[:3])}"
                     + (f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else ""))
    return found
