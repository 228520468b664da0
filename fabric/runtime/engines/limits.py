"""Bounds of the execution engines, named in one place.

Must not live here: code (each engine module imports what it needs from here).
"""

MAX_THREADS = 64  # execution.threads: worker threads per engine (the execute thread is one)
PARK_S = 0.05  # an idle engine thread parks this long per wait (never spins), then re-checks
BLOCK_TIMEOUT_S = 120.0  # one block taking longer than this fails the run ("engine stuck")
JOIN_TIMEOUT_S = 2.0  # close(): how long to wait for each engine thread to end
MAX_TXN_COST_US = 100_000.0  # execution.txn_cost_us: extra work per transaction, at most 0.1 s
COST_CALIBRATION_BYTES = 1 << 20  # sha256 input timed to learn bytes hashed per microsecond
# Virtual time of one task, for the exposed-parallelism figure (fabric.runtime.engines.virtual): what
# one transaction costs in Python beside its txn_cost_us, and one read-set validation.
VIRTUAL_TXN_US = 5.0
VIRTUAL_VALIDATE_US = 1.0
