"""Fuzz the GGUF header parser and spec_from_header with mutated real headers.

Run by test_header_checks.py in a child process whose address space is capped (RLIMIT_AS), so an unbounded
allocation fails the test with MemoryError instead of taking the machine down. Usage:
    python fuzz_headers.py EXAMPLES MEMORY_BUDGET_BYTES SEED.gguf...
Every outcome but a result or one of our own errors (OllamaFitError) is a failure. Work per example is
bounded by design (headers of at most a few hundred kB, arrays condensed): no wall-clock deadline.
Prints the headers it ran, counted as they ran: "fuzzed N headers from S seeds: A accepted, R refused".
"""

from __future__ import annotations

import resource
import struct
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollama_fit.errors import OllamaFitError
from ollama_fit.model.gguf.reader import read_header
from ollama_fit.model.gguf.shape import spec_from_header

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
INTERESTING = (0, 1, 2, 3, 7, 255, 256, 1000, 4096, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1)


class Walker:
    """Walks a well-formed header: records where each integer sits (offset, format) and can rewrite it with
    long arrays cut to `keep` entries (a real tokenizer is 262k strings; its shape is what matters)."""

    def __init__(self, buf: bytes, keep: int) -> None:
        self.buf, self.pos, self.keep = buf, 0, keep
        self.out = bytearray()
        self.slots: list[tuple[int, str]] = []

    def copy(self, n: int) -> bytes:
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        self.out += chunk
        return chunk

    def num(self, fmt: str) -> int:
        self.slots.append((len(self.out), fmt))
        return struct.unpack(fmt, self.copy(struct.calcsize(fmt)))[0]

    def string(self) -> None:
        self.copy(self.num("<Q"))

    def value(self, vtype: int) -> None:
        if vtype == 8:
            self.string()
        elif vtype == 9:
            etype = self.num("<I")
            count_at = len(self.out)
            n = self.num("<Q")
            for i in range(n):
                mark, marks = len(self.out), len(self.slots)
                self.value(etype)
                if i >= self.keep:  # read past, not copied
                    del self.out[mark:], self.slots[marks:]
            self.out[count_at : count_at + 8] = struct.pack("<Q", min(n, self.keep))
        else:
            self.num(_SCALAR[vtype])

    def walk(self) -> bytes:
        self.copy(4)
        self.num("<I")
        n_tensors, n_kv = self.num("<Q"), self.num("<Q")
        for _ in range(n_kv):
            self.string()
            self.value(self.num("<I"))
        for _ in range(n_tensors):
            self.string()
            for _ in range(self.num("<I")):
                self.num("<Q")
            self.num("<I")
            self.num("<Q")
        return bytes(self.out)


def seed(path: Path) -> tuple[bytes, list[tuple[int, str]]]:
    w = Walker(path.read_bytes(), keep=64)
    data = w.walk()
    return data, w.slots


def mutate(data: st.DataObject, buf: bytearray, slots: list[tuple[int, str]]) -> None:
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["number", "number", "flip", "set", "cut", "insert"]))
        if op == "number" and slots:  # a count, size or hyper-parameter set to an edge value
            at, fmt = data.draw(st.sampled_from(slots))
            if at + struct.calcsize(fmt) > len(buf) or fmt in ("<f", "<d", "<?"):
                continue
            bits = struct.calcsize(fmt) * 8
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if fmt.islower() else (0, 2**bits - 1)
            value = data.draw(st.sampled_from(INTERESTING) | st.integers(lo, hi))
            buf[at : at + struct.calcsize(fmt)] = struct.pack(fmt, max(lo, min(hi, value)))
            continue
        if not buf:
            continue
        pos = data.draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            buf[pos] = data.draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "cut":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))


def target(blob: bytes) -> bool:
    """What inspect does with a header: parse it, check it, build the spec and its per-layer figures.
    True when the header was accepted (a spec came out), False when refused with our own error."""
    try:
        header, _ = read_header(lambda start, end: blob[start:end], None)
        spec = spec_from_header(header)
    except OllamaFitError:
        return False
    assert spec.shape.n_layer == len(spec.layer_bytes)
    assert min(spec.weights_bytes, spec.params, spec.active_params) >= 0
    return True


def main(argv: list[str]) -> int:
    examples, budget = int(argv[0]), int(argv[1])
    seeds = [seed(Path(p)) for p in argv[2:]]
    for data, _ in seeds:  # every seed is valid as it is
        spec_from_header(read_header(lambda start, end, d=data: d[start:end], None)[0])
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (in_use + budget, in_use + budget))  # from here on, at most `budget` more

    outcomes = {True: 0, False: 0}  # accepted, refused: counted as the inputs are run

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        base, slots = seeds[data.draw(st.integers(0, len(seeds) - 1))]
        buf = bytearray(base)
        mutate(data, buf, slots)
        outcomes[target(bytes(buf))] += 1

    fuzz()
    accepted, refused = outcomes[True], outcomes[False]
    print(f"fuzzed {accepted + refused} headers from {len(seeds)} seeds: {accepted} accepted, {refused} refused")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
