"""Key files: one node's keys in one file, for runs whose keys are not derived from the shared
``crypto.cluster_secret`` (``crypto.keys: generated | files``; the default on SSH hosts).

A node's file (``node-<id>.keys``, JSON, mode 0600) holds its own Ed25519 seed, the link key
of each of its links per MAC scheme, and every node's public key: what ``derive_keys(...,
only_node=id)`` gives one process, and nothing of any other node's secrets. ``generate``
makes a fresh set for a run (os.urandom: the runner's KEYEX step, done before the start
instead of over the network), ``load`` reads one back into a ``transport.auth.KeyStore``
(refusing a file others can read, or one made for another node or cluster size), and
``keys_for`` is what a replica or client calls: its file if the config names a key folder,
else the keys derived from the cluster secret.

Must not live here: the signature and MAC code (transport.auth), which runs need which keys
(fabric.harness.runner).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from nacl.signing import SigningKey

from transport.auth import LINK_KEY_BYTES, MAX_NODES, KeyStore, derive_keys

FORMAT = "bft-fabric-keys/1"
#: bytes of an Ed25519 seed and of a raw public key
SEED_BYTES = 32
#: a key file is refused above this size (a node's links grow with the cluster)
MAX_FILE_BYTES = 64 * MAX_NODES * 2 + 4096


def file_name(node: int) -> str:
    return f"node-{node}.keys"


def generate(
    node_count: int, schemes: Iterable[str], rand: Callable[[int], bytes] = os.urandom
) -> dict[int, bytes]:
    """Fresh keys for every node: node id -> the bytes of its key file."""
    if not 0 < node_count <= MAX_NODES:
        raise ValueError(f"node_count {node_count} not in 1..{MAX_NODES}")
    schemes = sorted(set(schemes))
    seeds = {j: rand(SEED_BYTES) for j in range(node_count)}
    public = {j: SigningKey(seeds[j]).verify_key.encode().hex() for j in range(node_count)}
    links = {
        scheme: {
            (a, b): rand(LINK_KEY_BYTES[scheme])
            for a in range(node_count)
            for b in range(a, node_count)
        }
        for scheme in schemes
    }
    out = {}
    for j in range(node_count):
        own = {
            scheme: {
                str(b if a == j else a): key.hex() for (a, b), key in table.items() if j in (a, b)
            }
            for scheme, table in links.items()
        }
        doc = {
            "format": FORMAT,
            "node": j,
            "node_count": node_count,
            "private_key": seeds[j].hex(),
            "public_keys": {str(k): v for k, v in public.items()},
            "link_keys": own,
        }
        out[j] = json.dumps(doc, sort_keys=True).encode()
    return out


def write(folder: Path, node: int, data: bytes) -> Path:
    """Write one node's key file into ``folder``, mode 0600 from its creation."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / file_name(node)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def load(path: Path, node: int, node_count: int) -> KeyStore:
    """Node ``node``'s keys from its file; ValueError naming the file for anything wrong."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            raise ValueError(f"mode {mode:o}: others may read it; allowed: 0600")
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        doc = json.loads(Path(path).read_bytes())
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if doc.get("node") != node or doc.get("node_count") != node_count:
            raise ValueError(
                f"made for node {doc.get('node')} of {doc.get('node_count')}, "
                f"not node {node} of {node_count}"
            )
        seed = bytes.fromhex(doc["private_key"])
        public = {int(k): bytes.fromhex(v) for k, v in doc["public_keys"].items()}
        if sorted(public) != list(range(node_count)):
            raise ValueError("public_keys must name every node 0..node_count-1")
        links: dict[str, dict[tuple[int, int], bytes]] = {}
        for scheme, table in doc["link_keys"].items():
            peers = {int(k): bytes.fromhex(v) for k, v in table.items()}
            if sorted(peers) != list(range(node_count)):
                raise ValueError(f"{scheme} link keys must name every node 0..node_count-1")
            links[scheme] = {(node, peer): key for peer, key in peers.items()}
        if len(seed) != SEED_BYTES or any(len(v) != SEED_BYTES for v in public.values()):
            raise ValueError(f"Ed25519 keys must be {SEED_BYTES} bytes")
        return KeyStore(links, {node: seed}, public)
    except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"key file {path}: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"key file {path}: {exc}") from None


def keys_for(node: int, node_count: int, cluster_secret: str, key_dir: str) -> KeyStore:
    """A process's keys: its file in ``key_dir``, or ("" ) derived from the cluster secret."""
    if key_dir:
        return load(Path(key_dir) / file_name(node), node, node_count)
    return derive_keys(cluster_secret, node_count, only_node=node)
