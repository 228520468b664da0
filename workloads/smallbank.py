"""SmallBank workload generator (Cahill et al., SIGMOD'08; as in H-Store and Blockbench), seeded.

``SmallbankGenerator`` draws SmallBank transactions ``(op, account, arg)`` (encoding and the
six operations in workloads.txn):

- accounts ``0..accounts-1``, each with a checking and a savings balance; before the run
  every balance is ``initial_balance(account, kind)`` (a function of the account: every
  replica derives it, nothing is loaded or shipped);
- the mix: shares of Balance, DepositChecking, TransactSavings, Amalgamate, WriteCheck and
  SendPayment (``STANDARD_MIX`` is H-Store's 15/15/15/15/15/25);
- the hotspot: with probability ``hotspot`` an account is drawn from the first
  ``hot_accounts`` accounts, otherwise uniformly from all of them (H-Store's hotspot knob);
  two-account transactions draw a second, different account the same way;
- amounts: uniform in ``1..MAX_DRAWN_AMOUNT`` (TransactSavings withdraws as often as it
  deposits), so hot accounts run dry and Amalgamate empties accounts: failed transactions
  (insufficient funds) happen, and they are deterministic results.

One generator is not thread-safe: give each client thread its own (own seed).

Must not live here: transaction encoding (workloads.txn) or execution (fabric.runtime.engines).
``main()`` (``python -m workloads.smallbank``) prints the generation cost per transaction.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from workloads.txn import (
    AMALGAMATE,
    BALANCE,
    DEPOSIT_CHECKING,
    SEND_PAYMENT,
    TRANSACT_SAVINGS,
    WRITE_CHECK,
    Txn,
)

#: names of the mix shares in config order (workload.smallbank_<name>)
MIX_NAMES = (
    "balance",
    "deposit_checking",
    "transact_savings",
    "amalgamate",
    "write_check",
    "send_payment",
)
_MIX_OPS = (BALANCE, DEPOSIT_CHECKING, TRANSACT_SAVINGS, AMALGAMATE, WRITE_CHECK, SEND_PAYMENT)
STANDARD_MIX: dict[str, float] = {
    "balance": 0.15,
    "deposit_checking": 0.15,
    "transact_savings": 0.15,
    "amalgamate": 0.15,
    "write_check": 0.15,
    "send_payment": 0.25,
}
MIN_INITIAL_BALANCE = 10_000
MAX_INITIAL_BALANCE = 50_000
MAX_DRAWN_AMOUNT = 1_000  # amounts a generator draws: 1..this


def initial_balance(account: int, savings: bool) -> int:
    """The balance ``account`` holds before the run (a function of the account and kind)."""
    h = (account * 2 + int(savings)) * 0x9E3779B97F4A7C15 & ((1 << 64) - 1)
    h ^= h >> 29
    return MIN_INITIAL_BALANCE + h % (MAX_INITIAL_BALANCE - MIN_INITIAL_BALANCE + 1)


class SmallbankGenerator:
    """Seeded SmallBank transaction generator; see the module comment for the model."""

    def __init__(
        self,
        seed: int,
        accounts: int,
        hot_accounts: int = 100,
        hotspot: float = 0.0,
        mix: Mapping[str, float] | None = None,
    ) -> None:
        if accounts < 2:
            raise ValueError(f"accounts must be >= 2, got {accounts}")
        if not 1 <= hot_accounts <= accounts:
            raise ValueError(
                f"hot_accounts must be in 1..accounts ({accounts}), got {hot_accounts}"
            )
        if not 0.0 <= hotspot <= 1.0:
            raise ValueError(f"hotspot must be in 0..1, got {hotspot}")
        shares = dict(STANDARD_MIX if mix is None else mix)
        unknown = set(shares) - set(MIX_NAMES)
        if unknown:
            raise ValueError(f"unknown SmallBank transactions {sorted(unknown)}: {MIX_NAMES}")
        total = sum(shares.get(name, 0.0) for name in MIX_NAMES)
        if total <= 0 or any(shares.get(name, 0.0) < 0 for name in MIX_NAMES):
            raise ValueError(f"mix shares must be >= 0 and not all 0, got {shares}")
        self.seed = seed
        self.accounts = accounts
        self.hot_accounts = hot_accounts
        self.hotspot = hotspot
        acc = 0.0
        self._cum: list[float] = []
        for name in MIX_NAMES:
            acc += shares.get(name, 0.0) / total
            self._cum.append(acc)
        self._cum[-1] = 1.0 + 1e-9  # float noise never falls off the end
        self._rng = random.Random(seed)

    @classmethod
    def from_config(cls, workload_cfg: Any, seed: int) -> SmallbankGenerator:
        """Build from the ``workload:`` section (an object with attributes, or a mapping)."""

        def get(name: str) -> Any:
            if isinstance(workload_cfg, Mapping):
                return workload_cfg[name]
            return getattr(workload_cfg, name)

        return cls(
            seed=seed,
            accounts=int(get("smallbank_accounts")),
            hot_accounts=int(get("smallbank_hot_accounts")),
            hotspot=float(get("smallbank_hotspot")),
            mix={name: float(get(f"smallbank_{name}")) for name in MIX_NAMES},
        )

    def next_account(self, other_than: int = -1) -> int:
        """One account: hot with probability ``hotspot``; never ``other_than``."""
        rnd = self._rng.random
        while True:
            if rnd() < self.hotspot:
                a = int(rnd() * self.hot_accounts)
            else:
                a = int(rnd() * self.accounts)
            if a != other_than:
                return a

    def next_txn(self) -> Txn:
        return self.next_txns(1)[0]

    def next_txns(self, k: int) -> list[Txn]:
        """``k`` transactions.

        Per transaction, in this order: the operation, the account (``next_account``'s
        draw, inlined: the first account has no account to avoid), the amount, then what
        the operation needs (a sign, or a second account from ``next_account``).
        """
        rnd = self._rng.random
        cum = self._cum
        account = self.next_account
        hotspot, hot, accounts = self.hotspot, self.hot_accounts, self.accounts
        out: list[Txn] = []
        append = out.append
        for _ in range(k):
            u = rnd()
            i = 0
            while u >= cum[i]:
                i += 1
            op = _MIX_OPS[i]
            a = int(rnd() * hot) if rnd() < hotspot else int(rnd() * accounts)
            amount = 1 + int(rnd() * MAX_DRAWN_AMOUNT)
            if op == BALANCE:
                append((BALANCE, a, None))
            elif op == TRANSACT_SAVINGS:
                append((op, a, amount if rnd() < 0.5 else -amount))
            elif op == AMALGAMATE:
                append((op, a, account(a)))
            elif op == SEND_PAYMENT:
                append((op, a, (account(a), amount)))
            else:  # DEPOSIT_CHECKING, WRITE_CHECK
                append((op, a, amount))
        return out


def main() -> None:
    """Print µs per transaction of ``next_txns(100)`` at a few hotspots."""
    import time

    from workloads.txn import encode_txns

    n = 20_000
    for hotspot in (0.0, 0.5, 0.9):
        gen = SmallbankGenerator(seed=1, accounts=100_000, hot_accounts=100, hotspot=hotspot)
        started = time.perf_counter()
        batches = [gen.next_txns(100) for _ in range(n // 100)]
        gen_s = time.perf_counter() - started
        started = time.perf_counter()
        for b in batches:
            encode_txns(b)
        enc_s = time.perf_counter() - started
        print(
            f"smallbank hotspot {hotspot:.1f}: {gen_s / n * 1e6:5.2f} us/txn generate, "
            f"{enc_s / n * 1e6:5.2f} us/txn encode"
        )


if __name__ == "__main__":
    main()
