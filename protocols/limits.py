"""Bounds on what one peer may send or make a replica do: every size, count and rate cap
that protects a replica from hostile input, each with its unit and its reason.

This module imports nothing, so protocols/, transport/ and fabric/ may all read it. The
wire field bounds are declared on the message classes with these constants
(``protocols.common.Digest`` etc.); transport.wire enforces them at decode.

Must not live here: any code that enforces a bound (it stays with the thing bounded), or
tuning knobs of the benchmark (config/default.yaml).
"""

from __future__ import annotations

# --- wire fields (enforced by transport.wire at decode, before any message is built) ----

#: bytes of a digest field (SHA-256); b"" is allowed where a field may be empty
DIGEST_BYTES = 32
#: bytes of a signature or signature share (Ed25519: 64; b"" when signatures are off)
SIGNATURE_BYTES = 64
#: bytes of one client request's encoded transactions: batch_size x (value + overhead)
#: of any sane run (100 x 100 B is 10 KB); a client frame bound follows from it
MAX_TXNS_BYTES = 4 * 1024 * 1024
#: bytes of a whole frame a client may send (one Request: its txns plus header, ids, sig)
MAX_CLIENT_FRAME_BYTES = MAX_TXNS_BYTES + 1024
#: requests in one proposal batch (a proposal carries one client Request here; RCC rounds
#: and the simulator a few): 2.4 million minimal requests decoded in ~6 s (issue 19)
MAX_BATCH_REQUESTS = 4096
#: entries one array of per-replica items may hold (votes, proofs, shares): the config's
#: largest cluster (cluster.replicas <= 1024)
MAX_REPLICAS = 1024
#: entries one array of per-sequence items may hold (certificates in a view change, a new
#: view's re-proposals, plan digests): a watermark window's worth of any run that fits a frame
MAX_SEQS_PER_MESSAGE = 1 << 16

# --- pre-verification of client signatures inside proposals (fabric.runtime.stages) -------------

#: client-signature verifications one replica peer may cause in the input stage per
#: second (token bucket, refilled continuously); ~0.15 CPU-s/s at 150 us each. An honest
#: primary at batch 100 and 30k txn/s needs ~300/s. Past it, the proposal is still handed
#: to the protocol, which checks sender, view, window and digest before it verifies.
PREVERIFY_PER_SENDER_S = 1000
#: the bucket's depth (a burst), verifications
PREVERIFY_BURST = 2000
#: (client, timestamp, signature, txns digest) keys remembered as failed verifications,
#: FIFO: a replayed junk request costs one dict lookup, not a verification
MAX_FAILED_SIGNATURES = 16_384

# --- held messages (protocols.replica_core) ---------------------------------------------

#: bytes of held messages (for a later view, beyond the high watermark) in total per
#: replica, besides the count bound protocol.max_buffered_msgs; each sender gets 1/n of it
MAX_HELD_BYTES = 64 * 1024 * 1024

# --- fetch (catch-up) answers -----------------------------------------------------------

#: fetch requests one peer may have answered per second (token bucket in the input stage;
#: an honest lagging replica asks once per fetch period, a few per second at most)
FETCH_PER_SENDER_S = 20
#: the bucket's depth, requests
FETCH_BURST = 40
#: frames the output ring may hold before fetch answers are dropped first (counted): they
#: are a catch-up courtesy, protocol messages must never queue behind them. A fraction of
#: the ring's capacity (fabric.runtime.replica applies it).
FETCH_ANSWER_RING_SHARE = 0.25

# --- inbound connections (transport.zmq_io.Receiver: raw TCP/ipc streams) ---------------

#: connections one Receiver (one input socket) keeps open at once; a connection past it is
#: cut as it opens (``cut_connections``). Honest: one per (node, output thread) that writes
#: to this input, a few dozen in any run this machine can hold.
MAX_INBOUND_CONNECTIONS = 512
#: bytes one Receiver holds of frames it has counted but not yet completed, over all its
#: connections (each partial frame is already bounded by the frame bound of its header).
#: Past it, the connection holding the most is cut (``cut_buffered``). It is raised to one
#: whole frame (transport.max_frame_bytes) if that is larger, so any legal frame fits.
MAX_INBOUND_BUFFERED_BYTES = 64 * 1024 * 1024
#: bytes of one read ZeroMQ hands a STREAM socket (libzmq's in_batch_size, 8 KiB; this
#: build cannot change it): the unit of the receive queue below
INBOUND_CHUNK_BYTES = 8192
#: chunks ZeroMQ may queue per inbound connection before it stops reading that connection
#: (TCP back-pressure to the sender): transport.recv_hwm is clamped to it, so the bytes
#: queued and not yet counted are at most MAX_INBOUND_CONNECTIONS x this x 8 KiB (256 MiB)
MAX_INBOUND_QUEUE_CHUNKS = 64

# --- replica bookkeeping (protocols/pbft, protocols/poe, protocols/replica_core) --------
# Bounds, not tuning knobs: each caps a table or a retry loop of a replica. Window-relative
# ones are multiples of protocol.watermark_window (sequence numbers between the watermarks).

#: primary: client batches queued while the watermark window is full, in windows
QUEUED_BATCHES_PER_WINDOW = 2
#: delivered (PBFT) / executed (PoE) batches kept to answer FETCH, in windows
HISTORY_WINDOWS = 4
#: seqs one FETCH asks for and one answer covers, in windows
FETCH_SPAN_WINDOWS = 1
#: the catch-up timer's period is the view-change timeout divided by this (at least 1 tick)
FETCH_TICKS_DIVISOR = 2
#: delivered timestamps remembered per client for replay suppression; older ones fall
#: below a per-client floor that counts as delivered
REPLAY_WINDOW_PER_CLIENT = 256
#: a view-change timeout doubles on consecutive failed view changes, at most this many times
#: (base << 6 = 64x)
MAX_BACKOFF_EXP = 6
#: rounds of re-running held messages after the view or the watermarks moved
MAX_REPLAY_ROUNDS = 64
#: PBFT: NEW-VIEW copies sent to one lagging replica per view
MAX_NEW_VIEW_RESENDS = 4
#: PBFT: (replica, view) pairs one view change asks for their NEW-VIEW, per replica of the
#: cluster (4 x n in all)
ASKED_NEW_VIEW_PER_REPLICA = 4
#: PoE: retransmissions while the new view's plan locks, then the next view
MAX_NV_RETRIES = 2
#: PoE: the finality probe's period doubles while nothing becomes final, at most this often
MAX_FINAL_PROBE_DOUBLINGS = 6

# --- Zyzzyva (protocols/zyzzyva) ---------------------------------------------------------

#: ORDER-REQs one VIEW-CHANGE may carry, and one NEW-VIEW re-issue, in watermark windows (an
#: honest replica holds at most one window above its stable checkpoint): each costs a
#: signature check, so a longer one is refused before any is checked
ZYZZYVA_HISTORY_WINDOWS = 1
#: ORDER-REQs kept beyond a hole until it fills (fill-hole), in windows
ZYZZYVA_FUTURE_WINDOWS = 1
#: ORDER-REQs one FILL-HOLE answer sends, in windows
ZYZZYVA_FILL_WINDOWS = 1
#: commit certificates remembered as verified (a client re-sends its COMMIT with each
#: re-send of its request), in windows
ZYZZYVA_CHECKED_CERTS_WINDOWS = 1

# --- chained HotStuff (protocols/hotstuff) ------------------------------------------------

#: blocks one FETCH-BLOCKS answer carries (the asked block and its ancestors, newest first):
#: a lagging replica walks back this many heights per round trip
MAX_FETCH_BLOCKS = 16
#: uncommitted blocks one replica keeps in its block tree, in watermark windows: honest
#: leaders add one per view and the chain commits within a few views; a Byzantine leader
#: adds at most one fork per view it leads, dropped at the next commit
TREE_BLOCKS_PER_WINDOW = 4
#: blocks kept while their parent is fetched (orphans), in watermark windows
ORPHAN_BLOCKS_PER_WINDOW = 1
#: views ahead of ours a proposal, vote or NEW-VIEW may be for and still be kept (a replica
#: this far behind catches up through the QCs of later proposals instead)
MAX_VIEWS_AHEAD = 64
#: quorum certificates remembered as verified (each QC is verified once, however many
#: messages carry it: a proposal's justify, NEW-VIEW high QCs, fetched blocks)
MAX_VERIFIED_QCS = 512
#: ticks a replica waits for a block it learnt of (a vote for it at the next leader, an
#: orphan's parent: usually its proposal is on its way, reordered) before it fetches it
FETCH_LATER_TICKS = 2
#: distinct block digests a replica asks its peers for at once (missing ancestors, blocks a
#: QC names)
MAX_WANTED_BLOCKS = 64
# --- state transfer (fabric.runtime.state_transfer, protocols/state_transfer.py) ---------

#: bytes of state image one STATE-CHUNK carries (the wire bound of its data field); a
#: 100k-record YCSB image (~11 MB) is ~45 chunks
STATE_CHUNK_BYTES = 256 * 1024
#: bytes of one whole state image a replica assembles (fabric.runtime.state_image's bound)
MAX_STATE_IMAGE_BYTES = 512 * 1024 * 1024
#: chunk requests a fetching replica keeps outstanding to its current peer
STATE_CHUNKS_IN_FLIGHT = 4
#: state requests one peer may have answered per second (token bucket in the input stage)
STATE_REQUESTS_PER_SENDER_S = 400
#: the bucket's depth, requests
STATE_REQUEST_BURST = 64
#: encoded images a replica keeps to answer state requests (one per checkpoint seq asked)
MAX_SERVED_IMAGES = 2
#: PBFT: times a replica that lost track (restarted) repeats its probe FETCH while nothing
#: moves, one per fetch period
MAX_STATE_PROBES = 8
#: PBFT: idle periods (nothing delivered for a view-change timeout, then doubling) in which
#: a replica re-broadcasts its stable-checkpoint vote and asks what follows its last batch
MAX_IDLE_ROUNDS = 3

# --- RCC: an instance far behind its peers (protocols/rcc/lane.py) ------------------------

#: checkpoint rounds beyond the far-round gate an RCC lane collects votes for at once (its
#: newest few; one Checkpoint vote per replica each): 2f+1 matching ones are the
#: certificate that makes the replica fetch the state there
RCC_FAR_VOTE_ROUNDS = 4
