"""The verifiable random draw ("双随机", seed 001 ch.5 art.1), as one pure module that needs
nothing but the Python standard library: the worker runs it, and so does anyone holding a
draw's published record (`services/inspection/verify_draw.py` loads this file by its path).

Algorithm "vocreg-draw/1":

1. Commit. The pool is a JSON document: the institutions eligible in each stratum (integrity
   grade) with the stratum's ratio, the minimum count of the round, the team size, the
   eligible inspectors, the conflicted (inspector, institution) pairs and the exclusions with
   their reasons, plus the draw's id, plan, round and the named seed source. Its commitment
   is SHA-256 over its canonical JSON (keys sorted, no spaces, UTF-8, lists sorted). It is
   published before the seed exists.
2. Reveal. The canonical seed is SHA-256 over the canonical JSON of {algorithm_version,
   pool_hash, seed} where seed is the published value, Unicode NFC, with runs of white space
   made one space and the ends trimmed.
3. Institutions. Every institution's ticket is SHA-256(canonical seed | "institution" | id)
   ("|" is the byte 0x1F). Each stratum takes its ceil(pool x ratio) smallest tickets
   (consistent sampling); if together they are fewer than the round's minimum count, the
   smallest tickets of the rest of the pool, all strata together, make up the difference
   (marked top_up).
4. Inspectors. Every inspector's ticket is SHA-256(canonical seed | "inspector" | id); sorted
   by ticket they form one ring. Each drawn institution starts on the ring at
   SHA-256(canonical seed | "team" | institution id) mod ring size and walks it, taking the
   first `team_size` inspectors who are neither in conflict with it nor recused from it. So a
   recusal replaces only the recused inspector of that one inspection (the walk goes one
   step further), and the load spreads evenly over the ring.

CPU-bound over 100,000 institutions: `pause()` is called every CHUNK items, so a worker's
other calls get their turn (time.sleep(0) is eventlet's yield in a worker; elsewhere it
costs a system call).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import time
import unicodedata

ALGORITHM_VERSION = "vocreg-draw/1"
STRATA = ("D", "C", "B", "A", "UNGRADED")
BASIS_POINTS = 10_000
CHUNK = 5_000
SEPARATOR = b"\x1f"


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pool_hash(pool: dict) -> str:
    return sha256_hex(canonical_json(pool))


def normalize_seed(value: str) -> str:
    return " ".join(unicodedata.normalize("NFC", value or "").split())


def canonical_seed(pool_hash_hex: str, seed_value: str) -> str:
    return sha256_hex(canonical_json({"algorithm_version": ALGORITHM_VERSION,
                                      "pool_hash": pool_hash_hex,
                                      "seed": normalize_seed(seed_value)}))


def sample_size(pool_size: int, ratio_bp: int) -> int:
    """ceil(pool_size x ratio), in integers."""
    return (pool_size * ratio_bp + BASIS_POINTS - 1) // BASIS_POINTS


def build_pool(*, draw_id: str, plan_id: str, round_: int, seed_source: str,
               strata: dict[str, tuple[int, list[str]]], minimum_count: int, team_size: int,
               inspectors: list[str], conflicts: list[tuple[str, str, str]],
               excluded_institutions: list[tuple[str, str]],
               excluded_inspectors: list[tuple[str, str]]) -> dict:
    """The pool document, every list sorted (its canonical form). `strata`: stratum ->
    (ratio in basis points, institution ids)."""
    return {
        "algorithm_version": ALGORITHM_VERSION,
        "draw_id": draw_id, "plan_id": plan_id, "round": round_, "seed_source": seed_source,
        "strata": {name: {"ratio_bp": ratio, "institutions": sorted(ids)}
                   for name, (ratio, ids) in strata.items()},
        "minimum_count": minimum_count,
        "team_size": team_size,
        "inspectors": sorted(inspectors),
        "conflicts": sorted([list(c) for c in conflicts]),
        "excluded_institutions": sorted([list(e) for e in excluded_institutions]),
        "excluded_inspectors": sorted([list(e) for e in excluded_inspectors]),
    }


def _ticket(seed: bytes, kind: bytes, ident: str) -> bytes:
    return hashlib.sha256(seed + SEPARATOR + kind + SEPARATOR + ident.encode()).digest()


def _tickets(seed: bytes, kind: bytes, ids, pause) -> list[tuple[bytes, str]]:
    out = []
    prefix = seed + SEPARATOR + kind + SEPARATOR
    sha = hashlib.sha256
    for n, ident in enumerate(ids, 1):
        out.append((sha(prefix + ident.encode()).digest(), ident))
        if n % CHUNK == 0:
            pause()
    return out


def conflict_map(pool: dict) -> dict[str, set[str]]:
    """institution id -> inspectors in conflict with it."""
    found: dict[str, set[str]] = {}
    for inspector_id, institution_id, *_ in pool["conflicts"]:
        found.setdefault(institution_id, set()).add(inspector_id)
    return found


class Ring:
    """The inspectors in ticket order, and each drawn institution's walk over them."""

    def __init__(self, seed: bytes, inspectors: list[str], pause=time.sleep):
        self.seed = seed
        self.order = [ident for _, ident in sorted(_tickets(seed, b"inspector", inspectors,
                                                            lambda: pause(0)))]

    def team(self, institution_id: str, size: int, barred: set[str]) -> list[str]:
        """The first `size` inspectors of the institution's walk not in `barred`."""
        if not self.order:
            return []
        start = int.from_bytes(_ticket(self.seed, b"team", institution_id)[:8], "big") \
            % len(self.order)
        team = []
        for step in range(len(self.order)):
            inspector = self.order[(start + step) % len(self.order)]
            if inspector not in barred:
                team.append(inspector)
                if len(team) == size:
                    break
        return team


def run(pool: dict, seed_value: str, recusals=(), pause=time.sleep,
        committed: str | None = None) -> dict:
    """The draw's result from its pool, the revealed seed and the recusals made since
    ([institution, inspector] pairs): {"canonical_seed", "drawn": [{institution_id, stratum,
    ticket, top_up, inspector_ids, unstaffed}] in ticket order}. `committed`: the pool's hash
    when the caller has just computed it."""
    committed = committed or pool_hash(pool)
    seed_hex = canonical_seed(committed, seed_value)
    seed = bytes.fromhex(seed_hex)
    chosen: list[tuple[bytes, str, str, bool]] = []
    rest: list[tuple[bytes, str, str]] = []
    for name in sorted(pool["strata"]):
        stratum = pool["strata"][name]
        tickets = sorted(_tickets(seed, b"institution", stratum["institutions"],
                                  lambda: pause(0)))
        pause(0)
        take = min(len(tickets), sample_size(len(tickets), stratum["ratio_bp"]))
        chosen += [(t, i, name, False) for t, i in tickets[:take]]
        rest += [(t, i, name) for t, i in tickets[take:]]
    missing = pool["minimum_count"] - len(chosen)
    if missing > 0:
        chosen += [(t, i, name, True) for t, i, name in heapq.nsmallest(missing, rest)]
    chosen.sort()
    ring = Ring(seed, pool["inspectors"], pause)
    conflicts = conflict_map(pool)
    recused: dict[str, set[str]] = {}
    for institution_id, inspector_id, *_ in recusals:
        recused.setdefault(institution_id, set()).add(inspector_id)
    drawn = []
    for n, (ticket, institution_id, stratum, top_up) in enumerate(chosen, 1):
        barred = conflicts.get(institution_id, set()) | recused.get(institution_id, set())
        team = ring.team(institution_id, pool["team_size"], barred)
        unstaffed = len(team) < pool["team_size"]
        drawn.append({"institution_id": institution_id, "stratum": stratum,
                      "ticket": ticket.hex(), "top_up": top_up,
                      "inspector_ids": [] if unstaffed else team, "unstaffed": unstaffed})
        if n % CHUNK == 0:
            pause(0)
    return {"canonical_seed": seed_hex, "drawn": drawn}


def team_for(pool: dict, seed_value: str, institution_id: str, recused: set[str]) -> list[str]:
    """One drawn institution's team after recusals (Recuse): the same walk as `run`."""
    seed = bytes.fromhex(canonical_seed(pool_hash(pool), seed_value))
    barred = conflict_map(pool).get(institution_id, set()) | set(recused)
    team = Ring(seed, pool["inspectors"]).team(institution_id, pool["team_size"], barred)
    return team if len(team) == pool["team_size"] else []


def record(pool: dict, committed_hash: str, seed_value: str | None, result: dict | None,
           recusals: list[dict], committed_on: str = "", revealed_on: str = "",
           seed_available_on: str = "") -> dict:
    """The published record of a draw: everything verification needs, nothing else."""
    return {"algorithm_version": pool.get("algorithm_version"), "pool": pool,
            "pool_hash": committed_hash, "seed_source": pool.get("seed_source"),
            "seed_available_on": seed_available_on, "committed_on": committed_on,
            "seed_value": seed_value, "revealed_on": revealed_on,
            "recusals": recusals, "result": result}


def comparable(drawn: list[dict]) -> list[tuple]:
    return [(d["institution_id"], d["stratum"], d["ticket"], bool(d.get("top_up")),
             tuple(d.get("inspector_ids") or ()), bool(d.get("unstaffed"))) for d in drawn]


def verify(published: dict, pause=time.sleep) -> list[str]:
    """Problems found re-running a published record; [] when it verifies. The pool must hash
    to the commitment and the draw, re-run with the seed and the recusals, must give the
    published result."""
    problems = []
    pool = published.get("pool") or {}
    if pool.get("algorithm_version") != ALGORITHM_VERSION:
        return [f"algorithm {pool.get('algorithm_version')!r} is not {ALGORITHM_VERSION}"]
    actual = pool_hash(pool)
    if actual != published.get("pool_hash"):
        problems.append(f"the pool hashes to {actual}, not to the commitment "
                        f"{published.get('pool_hash')}")
    if published.get("seed_value") is None:
        return problems + ["the draw is not revealed yet: only its commitment can be checked"]
    recusals = [(r["institution_id"], r["inspector_id"]) for r in published.get("recusals") or ()]
    rerun = run(pool, published["seed_value"], recusals, pause, committed=actual)
    result = published.get("result") or {}
    if rerun["canonical_seed"] != result.get("canonical_seed"):
        problems.append("the canonical seed differs from the published one")
    mine, theirs = comparable(rerun["drawn"]), comparable(result.get("drawn") or [])
    if mine != theirs:
        differing = sum(1 for a, b in zip(mine, theirs, strict=False) if a != b) + abs(len(mine) - len(theirs))
        problems.append(f"re-running the draw gives another result ({differing} of "
                        f"{max(len(mine), len(theirs))} inspections differ)")
    return problems
