"""How long a live migration will take, and how long the guest will pause.

A pre-copy migration sends the guest's memory (and, for a block migration, its
local disks) once, then again what the guest dirtied meanwhile, round after
round; it switches over once what is left can be sent within the allowed
downtime. With memory M, bandwidth B and dirty rate R (all MiB and MiB/s),
round i sends d_i and lasts d_i / B, during which R * d_i / B is dirtied
again: the rounds shrink by R / B, so the move converges only when R < B,
and takes about M / (B - R). QEMU's migration and the fake driver's simulated
job both behave like this; the prediction is what Godwit's dry run shows
before a move (godwit server live-migrate --dry-run).
"""

MAX_ROUNDS = 1000


def predict(memory_mb, bandwidth_mb_s, dirty_rate_mb_s, max_downtime_ms, disk_mb=0):
    """{"converges", "duration_s", "downtime_ms", "rounds"}; ``duration_s`` and
    ``downtime_ms`` are None when it would not converge, and the whole answer
    is None when the bandwidth is unknown (unlimited)."""
    if not bandwidth_mb_s:
        return None
    bw, dirty = float(bandwidth_mb_s), float(dirty_rate_mb_s or 0)
    threshold = bw * max_downtime_ms / 1000.0      # what fits in the downtime
    # The first round carries the disks too; they are not dirtied again here
    # (writes during a block migration are mirrored, not re-sent).
    elapsed, left = 0.0, float(memory_mb) + float(disk_mb)
    for rounds in range(MAX_ROUNDS):
        if left <= threshold:
            downtime = left / bw * 1000.0
            return {"converges": True, "duration_s": round(elapsed + downtime / 1000.0, 3),
                    "downtime_ms": round(downtime, 1), "rounds": rounds}
        if rounds and dirty >= bw:
            break
        took = left / bw
        elapsed += took
        left = min(float(memory_mb), dirty * took)
    return {"converges": False, "duration_s": None, "downtime_ms": None, "rounds": None}
