#!/usr/bin/env python3
"""How far edged's echo filter is from the best any filter of its shape could do, and what
that best would buy in double talk.

Issue 4's double-talk targets (webrtcvad mode 3 keeps 90 % of the user's speech frames,
PESQ 2.0) depend first on how much echo the linear stage leaves while the user talks: the
suppressor cannot take out more echo there without taking the user with it. This measures,
on aec_bench's four rooms:

1. the echo the canceller's output filter leaves (`EchoCanceller.echo_estimate` against the
   scenario's true echo), in far-end single talk (6-12 s) and in double talk (12.3-20 s,
   from the user's first word until playback stops), with the shipped config and with
   `aec.distortion_fit`;
2. the same for least-squares fits over 2-12 s, the audio before the user talks: a linear
   filter as long as the canceller's span, and that filter with a cubic branch of
   `CUBIC_PARTITIONS` frames beside it (the loudspeaker's distortion as the canceller models
   it). Single talk lies inside their fitting window (an optimistic figure), double talk
   after it;
3. what aec_bench scores in double talk for the output with no suppressor at all: the
   canceller's linear stage, and the cubic least-squares fit.

    python benchmarks/echo_bound.py [--aec-bench ../shared/tools/aec_bench.py] [--json OUT]
Needs: apt-get install espeak-ng; pip install -e '.[bench]'. Takes about a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import solve_toeplitz, toeplitz
from scipy.signal import fftconvolve

from edged.aec import EchoCanceller
from edged.block_estimate import CUBIC_PARTITIONS
from edged.config import AecConfig
from edged.frames import FRAME_SAMPLES, RATE_HZ

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo import DEFAULT_BENCH, RESULTS, load_bench, scenarios

FIT_S = (2.0, 12.0)  # the least-squares fits' window: playback before the user talks
SINGLE_S = (6.0, 12.0)
DOUBLE_S = (12.3, 20.0)
RIDGE = 1e-6  # relative diagonal loading of the fits' normal equations


def erle_db(echo: np.ndarray, estimate: np.ndarray, span: tuple[float, float]) -> float:
    """Echo energy over what the estimate leaves of it, in a window (seconds)."""
    a, b = (int(t * RATE_HZ) for t in span)
    left = echo[a:b] - estimate[a:b]
    return float(10 * np.log10(np.sum(echo[a:b] ** 2) / max(float(np.sum(left**2)), 1e-20)))


def erle_pair(echo: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    return {
        "erle_single_db": erle_db(echo, estimate, SINGLE_S),
        "erle_double_db": erle_db(echo, estimate, DOUBLE_S),
    }


def lags(a: np.ndarray, b: np.ndarray, count: int) -> np.ndarray:
    """c[k] = sum over t of a[t] b[t - k], for k from -(count - 1) to count - 1."""
    full = fftconvolve(a, b[::-1])
    mid = len(b) - 1
    return full[mid - count + 1 : mid + count]


def fit_linear(x: np.ndarray, d: np.ndarray, taps: int) -> np.ndarray:
    r = lags(x, x, taps)[taps - 1 :].copy()
    r[0] *= 1 + RIDGE
    return solve_toeplitz(r, lags(d, x, taps)[taps - 1 :])


def fit_cubic(x: np.ndarray, d: np.ndarray, taps: int, cubic_taps: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear taps and cubic-branch taps, jointly (the normal equations' four Toeplitz blocks)."""
    x3 = x**3
    r11 = toeplitz(lags(x, x, taps)[taps - 1 :])
    r33 = toeplitz(lags(x3, x3, cubic_taps)[cubic_taps - 1 :])
    cross = lags(x, x3, max(taps, cubic_taps))  # sum x[t] x3[t - m]
    mid = max(taps, cubic_taps) - 1
    r13 = cross[mid + np.arange(cubic_taps)[None, :] - np.arange(taps)[:, None]]
    normal = np.block([[r11, r13], [r13.T, r33]])
    normal[np.diag_indices_from(normal)] *= 1 + RIDGE
    rhs = np.concatenate([lags(d, x, taps)[taps - 1 :], lags(d, x3, cubic_taps)[cubic_taps - 1 :]])
    w = np.linalg.solve(normal, rhs)
    return w[:taps], w[taps:]


def canceller_run(sc: dict[str, Any], cfg: AecConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The canceller's output filter's echo estimate, its output, and its latency (samples)."""
    ec = EchoCanceller(RATE_HZ, FRAME_SAMPLES, cfg)
    mic = sc["mic"].reshape(-1, FRAME_SAMPLES)
    ref = sc["ref"].reshape(-1, FRAME_SAMPLES)
    estimate = np.zeros(mic.size)
    out = np.zeros(mic.size)
    for k in range(len(mic)):
        at = slice(k * FRAME_SAMPLES, (k + 1) * FRAME_SAMPLES)
        out[at] = ec.process(mic[k], ref[k]) / 32768
        estimate[at] = ec.echo_estimate
    return estimate, out, ec.latency_samples


def dt_scores(bench: Any, sc: dict[str, Any], out: np.ndarray) -> dict[str, float | None]:
    r = bench.score(out, sc)
    return {"pesq_dt": r["pesq_dt"], "vad3_dt_recall": r["vad3_dt_recall"]}


def room_figures(bench: Any, sc: dict[str, Any]) -> dict[str, Any]:
    mic, ref, echo = sc["mic"] / 32768, sc["ref"] / 32768, sc["echo"]
    shipped = AecConfig()
    span_taps = round(shipped.tail_ms * RATE_HZ / 1000 / FRAME_SAMPLES) * FRAME_SAMPLES
    cubic_taps = CUBIC_PARTITIONS * FRAME_SAMPLES
    a, b = (int(t * RATE_HZ) for t in FIT_S)
    fig: dict[str, Any] = {"room": sc["info"]["name"]}
    for name, cfg in (
        ("edged", shipped),
        ("edged_distortion_fit", dataclasses.replace(shipped, distortion_fit=True)),
    ):
        estimate, out, latency = canceller_run(sc, cfg)
        fig[name] = {
            **erle_pair(echo, estimate),
        }
        if name == "edged":
            shipped_out = np.concatenate([out[latency:], np.zeros(latency)])
            fig[name]["shipped"] = dt_scores(bench, sc, shipped_out)
            fig[name]["no_suppressor"] = dt_scores(bench, sc, mic - estimate)
    w = fit_linear(ref[a:b], mic[a:b], span_taps)
    linear = fftconvolve(ref, w)[: len(ref)]
    fig["ls_linear"] = {
        **erle_pair(echo, linear),
    }
    w1, w3 = fit_cubic(ref[a:b], mic[a:b], span_taps, cubic_taps)
    cubic = fftconvolve(ref, w1)[: len(ref)] + fftconvolve(ref**3, w3)[: len(ref)]
    fig["ls_cubic"] = {
        **erle_pair(echo, cubic),
        "no_suppressor": dt_scores(bench, sc, mic - cubic),
    }
    return fig


def fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def print_tables(rows: list[dict[str, Any]]) -> None:
    print("\nEcho the linear stage leaves: true-echo ERLE, dB (single talk 6-12 s / double talk 12.3-20 s)")
    print("| room | edged | edged, distortion_fit | LS linear | LS linear + cubic |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = [
            f"{fmt(r[k]['erle_single_db'])} / {fmt(r[k]['erle_double_db'])}"
            for k in ("edged", "edged_distortion_fit", "ls_linear", "ls_cubic")
        ]
        print(f"| {r['room']} | " + " | ".join(cells) + " |")
    print("\nDouble talk as aec_bench scores it (PESQ / webrtcvad mode 3 recall %; targets 2.0 / 90)")
    print("| room | edged shipped | edged's linear stage, no suppressor | LS linear + cubic, no suppressor |")
    print("|---|---|---|---|")
    cols = (("edged", "shipped"), ("edged", "no_suppressor"), ("ls_cubic", "no_suppressor"))
    for r in [*rows, mean_row(rows, cols)]:
        cells = [f"{fmt(r[k][s]['pesq_dt'], 2)} / {fmt(100 * r[k][s]['vad3_dt_recall'])}" for k, s in cols]
        print(f"| {r['room']} | " + " | ".join(cells) + " |")


def mean_row(rows: list[dict[str, Any]], cols: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"room": "mean"}
    for k, s in cols:
        cell = {}
        for m in ("pesq_dt", "vad3_dt_recall"):
            v = [r[k][s][m] for r in rows if r[k][s][m] is not None]
            cell[m] = float(np.mean(v)) if v else None
        out.setdefault(k, {})[s] = cell
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aec-bench", type=Path, default=DEFAULT_BENCH)
    ap.add_argument("--json", type=Path, default=RESULTS / "echo_bound.json")
    args = ap.parse_args(argv)
    bench = load_bench(args.aec_bench)
    rows = [room_figures(bench, sc) for sc in scenarios(bench, bench.material())]
    print_tables(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rooms": rows}, indent=1))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
