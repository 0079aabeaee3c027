"""Garbage over many raw TCP connections must not hurt the server or the clients that behave.

Against our server in its own process (stderr captured), a few hundred short connections send
random bytes, mutated frames after a valid SETUP, or a mutated SETUP followed by valid frames, split
into random chunks; some read what comes back, others hang up at once. Afterwards a normal client
is still served, the server's task count is back where it started (no connection leaked), it exits
cleanly when asked, and its stderr holds no traceback. The seed is fixed, so a failure reproduces.
"""

from __future__ import annotations

import random

import anyio
import pytest

from anyio_rsocket import Payload, connect_tcp
from anyio_rsocket.frames import (
    CancelFrame,
    ErrorFrame,
    ExtFrame,
    Frame,
    KeepaliveFrame,
    LeaseFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    ResumeFrame,
    SetupFrame,
    encode_frame,
)
from anyio_rsocket.framing import prefix_frames

from ..rawpeer import DEFAULT_SETUP
from .processes import Child, server_child

pytestmark = pytest.mark.anyio

SEED = 20_240_917
CONNECTIONS = 300
CONCURRENCY = 25
#: How long a connection that reads the server's answers waits for more before hanging up.
READ_WINDOW = 0.05

SETUP = encode_frame(DEFAULT_SETUP)
#: Well-formed frames of every type (and some flag combinations): what mutations start from.
SAMPLE_FRAMES: list[Frame] = [
    SetupFrame(1000, 5000, "text/plain", "text/plain", data=b"d", metadata=b"m"),
    SetupFrame(1000, 5000, "a", "b", lease=True),
    KeepaliveFrame(True, 0, b"k"),
    KeepaliveFrame(False, 7),
    LeaseFrame(1000, 5),
    RequestResponseFrame(1, b"data", b"meta"),
    RequestResponseFrame(3, b"part", follows=True),
    RequestFireAndForgetFrame(5, b"fnf"),
    RequestStreamFrame(7, 3, b"stream"),
    RequestChannelFrame(9, 2, b"channel"),
    RequestChannelFrame(11, 1, b"done", complete=True),
    RequestNFrame(7, 10),
    CancelFrame(7),
    PayloadFrame(9, b"next", next=True),
    PayloadFrame(9, complete=True),
    PayloadFrame(3, b"rest", next=True),
    ErrorFrame(9, 0x201, b"app"),
    ErrorFrame(0, 0x101, b"conn"),
    MetadataPushFrame(b"push"),
    ExtFrame(1, 42, b"ext", ignore=True),
    ResumeFrame(b"token", 0, 0),
]
VALID_FRAMES = [encode_frame(frame) for frame in SAMPLE_FRAMES]


KINDS = [
    "random",
    "random-frames",
    "mutated-after-setup",
    "mutated-setup",
    "lying-lengths",
    "valid-then-junk",
]


def mutate(frame: bytes, rng: random.Random) -> bytes:
    """One or more random damages to an encoded frame (without its length prefix)."""
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(6)
        if choice == 0 and data:  # flip a bit
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:  # overwrite a byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice == 2:  # truncate
            del data[rng.randrange(len(data) + 1) :]
        elif choice == 3:  # append junk
            data += rng.randbytes(rng.randint(1, 40))
        elif choice == 4 and len(data) >= 6:  # another frame type and random flags
            data[4] = rng.randrange(256)
            data[5] = rng.randrange(256)
        elif len(data) >= 4:  # another stream id
            data[0:4] = rng.randbytes(4)
    return bytes(data)


def prefixed(frames: list[bytes], rng: random.Random, lie: bool = False) -> bytes:
    """Length-prefix frames; with ``lie``, some prefixes declare a wrong length."""
    if not lie:
        return prefix_frames(frames)
    out = bytearray()
    for frame in frames:
        length = len(frame)
        if rng.random() < 0.5:
            length = rng.choice([0, 1, 5, max(0, length - 1), length + 1, rng.randrange(1 << 24)])
        out += length.to_bytes(3, "big") + frame
    return bytes(out)


def fuzz_case(index: int) -> tuple[str, list[bytes], bool]:
    """What connection ``index`` does: its kind, the chunks it sends, and whether it reads answers."""
    rng = random.Random(f"{SEED}-{index}")
    kind = rng.choice(KINDS)
    valid = [rng.choice(VALID_FRAMES) for _ in range(rng.randint(1, 6))]
    if kind == "random":
        data = rng.randbytes(rng.randint(1, 300))
    elif kind == "random-frames":  # well-delimited frames of random bytes, maybe after a SETUP
        junk = [rng.randbytes(rng.randint(0, 80)) for _ in range(rng.randint(1, 4))]
        data = prefix_frames([SETUP, *junk] if rng.random() < 0.5 else junk)
    elif kind == "mutated-after-setup":
        data = prefix_frames([SETUP, *(mutate(frame, rng) for frame in valid)])
    elif kind == "mutated-setup":
        data = prefix_frames([mutate(SETUP, rng), *valid])
    elif kind == "lying-lengths":
        data = prefix_frames([SETUP]) + prefixed([mutate(f, rng) for f in valid], rng, lie=True)
    else:
        data = prefix_frames([SETUP, *valid]) + rng.randbytes(rng.randint(1, 64))
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 3))))
    chunks = [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return kind, chunks, rng.random() < 0.5


class Outcomes:
    """How the server treated the fuzzing connections (to show the fuzz reached it)."""

    def __init__(self) -> None:
        self.answered = 0  # connections that received at least one byte
        self.closed_by_server = 0  # connections the server hung up on


async def run_case(port: int, index: int, limiter: anyio.CapacityLimiter, outcomes: Outcomes) -> None:
    _kind, chunks, read = fuzz_case(index)
    received = 0
    async with limiter, await anyio.connect_tcp("127.0.0.1", port) as stream:
        try:
            for chunk in chunks:
                await stream.send(chunk)
            if read:
                with anyio.move_on_after(READ_WINDOW):
                    while True:
                        received += len(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            outcomes.closed_by_server += 1  # one of the expected outcomes
    outcomes.answered += received > 0


async def wait_for_tasks(server: Child, baseline: int) -> int:
    """Poll the server's task count until it is back to ``baseline`` (no event exists for that)."""
    while True:
        tasks = int((await server.stats())["tasks"])
        if tasks <= baseline:
            return tasks
        await anyio.sleep(0.05)


def test_fuzz_cases_are_reproducible_and_varied() -> None:
    cases = [fuzz_case(index) for index in range(CONNECTIONS)]
    assert cases == [fuzz_case(index) for index in range(CONNECTIONS)]
    assert {kind for kind, _chunks, _read in cases} == set(KINDS)


async def test_fuzzed_connections_leave_the_server_healthy(anyio_backend: str) -> None:
    async with server_child(anyio_backend, capture_stderr=True) as (server, port):
        baseline = int((await server.stats())["tasks"])
        limiter = anyio.CapacityLimiter(CONCURRENCY)
        outcomes = Outcomes()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as task_group:
                for index in range(CONNECTIONS):
                    task_group.start_soon(run_case, port, index, limiter, outcomes)
        print(f"{outcomes.answered} connections answered, {outcomes.closed_by_server} closed by the server")
        # Some got answers (errors, echoes, keepalives) and some were refused outright.
        assert outcomes.answered > 0
        assert outcomes.closed_by_server > 0

        with anyio.fail_after(5):
            async with connect_tcp("127.0.0.1", port) as rsocket:
                assert (await rsocket.request_response(Payload(b"still here"))).data == b"still here"
                async with rsocket.request_stream(Payload(b"s"), initial_n=3) as stream:
                    items = [(await stream.receive()).data for _ in range(3)]
                assert items == [b"item-0", b"item-1", b"item-2"]
        with anyio.fail_after(5):
            await wait_for_tasks(server, baseline)
        returncode = await server.stop()

    stderr = server.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    assert returncode == 0, stderr
