"""The live fuzzer's frame generators (fabric.harness.fuzz_frames) and its options: seeded,
every class made, terminal frames only at the end of a burst, fates as the Receiver's own
checks give them, bounded sizes; bad options refused by name."""

from __future__ import annotations

import dataclasses
import random

import pytest

from fabric.harness import fuzz, fuzz_frames, fuzz_report
from fabric.harness.config import load_config
from fabric.runtime.replica import replica_frame_policy
from protocols import codec
from transport import auth, wire

SECRET = "fuzz-frames-secret"


def _target(mac: str = "cmac-aes", n: int = 4, clients: int = 1) -> fuzz_frames.FuzzTarget:
    cfg = load_config(
        None,
        [
            f"cluster.replicas={n}",
            f"cluster.clients={clients}",
            f"crypto.link_mac={mac}",
            f"crypto.cluster_secret={SECRET}",
        ],
    )
    return fuzz.fuzz_target(cfg, 0, 1, frozenset(codec.registered_kinds()))


def _frames(source: fuzz_frames.FrameSource, count: int) -> list[list[fuzz_frames.Frame]]:
    bursts = []
    made = 0
    while made < count:
        burst = source.burst(count - made)
        bursts.append(burst)
        made += len(burst)
    return bursts


GENUINE = fuzz_frames.genuine_messages("pbft", 4, 1, 0, seed=1)


def test_a_seed_replays_the_same_frames_and_another_seed_does_not() -> None:
    target = _target()
    one = [f.data for b in _frames(fuzz_frames.FrameSource(target, GENUINE, 7), 3000) for f in b]
    two = [f.data for b in _frames(fuzz_frames.FrameSource(target, GENUINE, 7), 3000) for f in b]
    other = [f.data for b in _frames(fuzz_frames.FrameSource(target, GENUINE, 8), 3000) for f in b]
    assert one == two
    assert one != other


def test_every_class_is_made_and_only_terminal_frames_end_a_connection() -> None:
    bursts = _frames(fuzz_frames.FrameSource(_target(), GENUINE, 3), 20_000)
    frames = [f for b in bursts for f in b]
    assert len(frames) == 20_000
    assert {f.cls for f in frames} == set(fuzz_frames.CLASSES)
    for burst in bursts:
        assert all(f.cls in fuzz_frames.STREAM_CLASSES for f in burst[:-1]), burst
    fates = {f.fate for f in frames}
    # a compromised link's frames reach the protocol; the rest are refused for many reasons
    assert any(fate.startswith(fuzz_frames.ACCEPTED) for fate in fates)
    for reason in ("mac", "unknown_sender", "body", "magic", "version", "unknown_kind"):
        assert reason in fates, reason
    for reason in ("bad_sender", "client_kind", "too_long", "too_long_for_kind", "partial_frame"):
        assert reason in fates, reason


def test_genuine_frames_are_what_the_compromised_peer_seals_and_they_decode() -> None:
    target = _target()
    assert GENUINE, "the simulated run sent the target messages"
    source = fuzz_frames.FrameSource(target, GENUINE, 1)
    keys = auth.derive_keys(SECRET, target.node_count, only_node=0)
    opener = auth.LinkAuth("cmac-aes", 0, keys)  # the target's own LinkAuth, every key
    for msg, sealed in zip(GENUINE, source.sealed_genuine, strict=True):
        frame = opener.open(sealed)
        assert wire.decode(frame) == (1, msg)


def test_header_fates_are_the_receivers_reasons() -> None:
    target = _target()
    kind = sorted(codec.registered_kinds())[0]
    head = wire.HEADER.pack
    assert fuzz_frames.header_fate(target, head(b"xx", 1, kind, 1, 0)) == "magic"
    assert fuzz_frames.header_fate(target, head(wire.MAGIC, 9, kind, 1, 0)) == "version"
    assert fuzz_frames.header_fate(target, head(wire.MAGIC, 1, 999, 1, 0)) == "unknown_kind"
    assert fuzz_frames.header_fate(target, head(wire.MAGIC, 1, kind, -5, 0)) == "bad_sender"
    assert fuzz_frames.header_fate(target, head(wire.MAGIC, 1, kind, 1, 2**31)) == "too_long"
    assert fuzz_frames.header_fate(target, head(wire.MAGIC, 1, kind, 1, 0)) is None
    # a kind this process knows but the target does not is unknown to the target
    narrow = dataclasses.replace(target, kinds=frozenset({kind}))
    other = sorted(codec.registered_kinds())[-1]
    assert fuzz_frames.header_fate(narrow, head(wire.MAGIC, 1, other, 1, 0)) == "unknown_kind"


def test_without_link_macs_a_garbage_body_is_decoded_not_mac_checked() -> None:
    target = _target(mac="none")
    frames = [f for b in _frames(fuzz_frames.FrameSource(target, GENUINE, 5), 5000) for f in b]
    garbage = {f.fate for f in frames if f.cls == "garbage_body"}
    assert "mac" not in garbage and "body" in garbage
    assert all(len(f.data) >= 2 for f in frames)


def test_random_messages_of_every_kind_round_trip_the_codec() -> None:
    rng = random.Random(11)
    for _kind, cls in sorted(codec.registered_kinds().items()):
        made = [m for m in (fuzz_frames.random_message(cls, rng) for _ in range(30)) if m]
        assert made, cls.__name__
        for msg in made:
            k, body = codec.kind_and_body(msg)
            try:
                assert codec.decode_body(k, body) == msg
            except codec.DecodeError as exc:  # one past a Max bound, on purpose
                assert exc.reason in ("field_too_long", "too_many_items", "body"), exc


def test_frames_stay_small_oversized_ones_are_sent_as_a_header_only() -> None:
    frames = [f for b in _frames(fuzz_frames.FrameSource(_target(), GENUINE, 9), 20_000) for f in b]
    assert max(len(f.data) for f in frames) <= fuzz_frames.MAX_LARGE_BODY_BYTES + 64
    assert all(len(f.data) == wire.HEADER_SIZE for f in frames if f.cls == "oversized")


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--frames", "0", "--frames 0: allowed 1..100000000"),
        ("--rate", "5", "--rate 5: allowed 100..1000000"),
        ("--target", "4", "--target 4: allowed 0..3"),
        ("--peer", "0", "--peer 0: allowed 0..3 except the target 0"),
        ("--set", "network.emulation=transport", "network.emulation=transport: the fuzzer"),
        ("--set", "cluster.hosts=[10.0.0.1]", "the fuzzer sends to loopback only"),
    ],
)
def test_bad_options_are_refused_by_name(option: str, value: str, named: str, capsys) -> None:
    assert fuzz.main([option, value, "--no-baseline"]) == 2
    assert named in capsys.readouterr().err


def test_the_fuzzer_holds_only_its_one_link_key() -> None:
    target = _target()
    cfg_policy = replica_frame_policy(
        load_config(None, ["crypto.link_mac=cmac-aes", f"crypto.cluster_secret={SECRET}"])
    )
    assert target.policy == cfg_policy
    peer = target.peer_auth()
    assert peer.knows(0) and not peer.knows(2) and not peer.knows(3)


def test_whole_frames_cuts_a_segment_into_the_senders_frames_and_skips_a_torn_one() -> None:
    target = _target()
    source = fuzz_frames.FrameSource(target, GENUINE, 1)
    mine = source.sealed_genuine[:3]
    other_auth = auth.LinkAuth("cmac-aes", 2, auth.derive_keys(SECRET, 5, only_node=2))
    other = other_auth.seal(0, wire.encode(GENUINE[0], 2))
    segment = mine[0] + other + mine[1] + mine[2]
    cut = fuzz_frames.whole_frames
    assert cut(segment, 1, 16, wire.DEFAULT_MAX_FRAME_BYTES) == mine
    assert cut(segment, 2, 16, wire.DEFAULT_MAX_FRAME_BYTES) == [other]
    assert cut(segment[5:], 1, 16, wire.DEFAULT_MAX_FRAME_BYTES) == []  # starts mid-frame
    assert cut(segment[:-1], 1, 16, wire.DEFAULT_MAX_FRAME_BYTES) == []  # ends mid-frame


def test_captured_frames_are_replayed_byte_for_byte_and_their_messages_mutated() -> None:
    target = _target()
    captured = fuzz_frames.FrameSource(target, GENUINE, 1).sealed_genuine[5:9]
    source = fuzz_frames.FrameSource(target, [], 4, captured)
    assert source.sealed_genuine == captured
    assert len(source.genuine) == 4  # decoded from the captured frames
    frames = [f for b in _frames(source, 5000) for f in b]
    replays = {f.data for f in frames if f.cls == "replay"}
    assert replays and replays <= set(captured)
    assert all(f.fate.startswith(fuzz_frames.ACCEPTED) for f in frames if f.cls == "replay")


def test_compare_names_every_counter_that_differs_from_what_was_sent() -> None:
    sent = {"by_fate": {"mac": 10, "magic": 2, "accepted:Commit": 7}}
    rows, problems = fuzz_report.compare(sent, {"mac": 10, "magic": 2, "fetch_rate": 3}, None)
    assert [(r["reason"], r["expected"], r["counted"]) for r in rows] == [
        ("mac", 10, 10),
        ("magic", 2, 2),
    ]
    assert problems == []
    _, problems = fuzz_report.compare(
        sent, {"mac": 9, "magic": 2, "body": 1, "error:KeyError": 1}, {}
    )
    assert problems == [
        "mac: the frames sent make 10, the target counted 9",
        "body: the frames sent make 0, the target counted 1",
        "error:KeyError: 1 (an exception in the replica, counted)",
    ]


def test_window_rate_averages_the_whole_seconds_inside_the_window() -> None:
    stats = {"t0": 100.5, "executed_per_s": [[101, 10], [102, 20], [103, 30], [104, 40]]}
    assert fuzz_report.window_rate(stats, 0.5, 3.5) == 20.0  # seconds 101, 102, 103 (not 104)
    assert fuzz_report.window_rate(stats, 0.6, 1.0) is None  # no whole second inside
    assert fuzz_report.window_rate(None, 0, 10) is None


def test_frames_that_passed_are_found_in_the_targets_received_counts() -> None:
    sent = {
        "by_fate": {"accepted:Commit": 7, "accepted:Reply": 2, "mac": 1},
        "aborted_frames": 0,
        "frames_sent": 10,
    }
    stats = {"drops": {"mac": 1}, "messages": {"received": {"Commit": 19, "Reply": 2}}}
    report = fuzz_report.fuzz_report(sent, {}, stats, None, None, {})
    assert report["accepted"] == [
        {"kind": "Commit", "expected": 7, "received": 19, "genuine": 12, "baseline": None},
        {"kind": "Reply", "expected": 2, "received": 2, "genuine": 0, "baseline": None},
    ]
    assert report["problems"] == []
    stats["messages"]["received"]["Reply"] = 1  # one that passed is missing at the target
    report = fuzz_report.fuzz_report(sent, {}, stats, None, None, {})
    assert report["problems"] == ["Reply: 2 passed MAC and decode, the target received 1"]
