#!/usr/bin/env python3
"""ringway bench: charts from a results.json written by bench/run.py.

    python3 bench/report.py bench/results/<date>              # PNGs next to results.json
    python3 bench/report.py bench/results/<date> --out /tmp/x # PNGs somewhere else

Writes throughput.png (median req/s, or GB/s for scenarios whose cost is CPU-s/GB), cpu_cost.png
(median CPU-µs/request or CPU-s/GB, min–max error bars over reps) and latency.png (median p50 and
p99), each with one subplot per scenario and one bar (pair) per proxy. Scenario and proxy metadata
(cost unit, labels, order) come from run.py's SCENARIOS and PROXIES tables.

Needs matplotlib (python3 -m pip install matplotlib); uses the Agg backend, no display needed.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib.use)

HERE = os.path.dirname(os.path.abspath(__file__))


# bench/run.py, for its SCENARIOS and PROXIES tables (its main() runs only under __main__, so importing is inert).
sys.path.insert(0, HERE)
import run as RUN  # noqa: E402
SCENARIOS, PROXIES = RUN.SCENARIOS, RUN.PROXIES

# Bar colours by proxy family, so ringway stands out next to its peers in every subplot.
FAMILY_COLOURS = {'ringway': '#1f77b4', 'ringway-lb': '#6a51a3', 'nginx': '#2ca02c', 'nginx-http': '#2ca02c',
                  'haproxy': '#d62728', 'haproxy-http': '#d62728', 'ref': '#7f7f7f',
                  # minimal configs: the family's colour, lighter
                  'nginx-http-min': '#98df8a', 'haproxy-http-min': '#ff9896'}


def short_label(name):
    """A readable axis label: PROXIES[name]['label'] without parentheses or text after a comma."""
    label = PROXIES.get(name, {}).get('label', name)
    label = re.sub(r'\s*\([^)]*\)', '', label).split(',')[0].strip()
    return label if len(label) <= 30 else label[:29] + '…'


def colour(name):
    return FAMILY_COLOURS.get(PROXIES.get(name, {}).get('kind'), '#8c564b')


def cost_key(scen):
    # A scenario no longer in SCENARIOS (an older results.json): guess from the data it has.
    return SCENARIOS.get(scen, {}).get('cost', 'us_per_req')


def order(keys, table):
    """Keys in the table's order first, unknown ones after in first-seen order."""
    known = [k for k in table if k in keys]
    return known + [k for k in keys if k not in table]


def cells(results):
    """{scen: {proxy: [successful runs]}}; a proxy whose runs all failed maps to []."""
    out = {}
    for r in results:
        scen, proxy = r.get('scen'), r.get('proxy')
        if scen is None or proxy is None:
            continue
        runs = out.setdefault(scen, {}).setdefault(proxy, [])
        if 'error' not in r:
            runs.append(r)
    return {s: out[s] for s in order(list(out), SCENARIOS)}


def stat(runs, key):
    """(median, min, max) of runs[key] over the runs that have it, or None."""
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def grid(n):
    ncols = 1 if n == 1 else 2
    return ncols, math.ceil(n / ncols)


def figure(table, title):
    """One subplot per scenario; height follows the largest number of proxies in a row."""
    ncols, nrows = grid(len(table))
    per_row = max(len(p) for p in table.values())
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, nrows * (0.45 * per_row + 1.3) + 0.6),
                             squeeze=False)
    fig.suptitle(title, fontsize=13)
    for ax in axes.flat[len(table):]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def save(fig, path):
    # Leave ~0.5 inch at the top for the figure title.
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scen_title(scen):
    what = SCENARIOS.get(scen, {}).get('what', '')
    return f'{scen}: {what}' if len(what) <= 55 else f'{scen}: {what[:54]}…'


def fmt_value(v):
    if v >= 1000:
        return f'{v:,.0f}'
    if v >= 10:
        return f'{v:.1f}'
    if v >= 1:
        return f'{v:.2f}'
    return f'{v:.3g}'


def hbars(ax, names, stats, xlabel, errorbars):
    """Horizontal bars (labels stay readable), median value printed at the end of each bar.
    stats[i] is (median, min, max) or None (failed / missing cell: 'failed' is printed instead)."""
    ys = list(range(len(names)))
    top = max([s[2] if errorbars else s[0] for s in stats if s] or [1])
    for y, name, s in zip(ys, names, stats):
        if s is None:
            ax.text(0, y, ' failed / no data', va='center', ha='left', fontsize=8, color='#d62728')
            continue
        med, lo, hi = s
        err = [[med - lo], [hi - med]] if errorbars else None
        ax.barh(y, med, color=colour(name), xerr=err, capsize=3, ecolor='black', height=0.65)
        ax.text((hi if errorbars else med) + top * 0.01, y, fmt_value(med), va='center', fontsize=8)
    ax.set_yticks(ys, [short_label(n) for n in names], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.18)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.grid(axis='x', alpha=0.3)


def plot_throughput(table, path):
    fig, axes = figure(table, 'Throughput (median over reps; GB/s for 1 MiB transfers, req/s otherwise)')
    for ax, (scen, per) in zip(axes, table.items()):
        names = order(list(per), PROXIES)
        gb = cost_key(scen) == 's_per_gb'
        key = 'gbps' if gb else 'rps'
        hbars(ax, names, [stat(per[n], key) for n in names], 'GB/s' if gb else 'requests/s', errorbars=False)
        ax.set_title(scen_title(scen), fontsize=10)
    save(fig, path)


def plot_cost(table, path):
    fig, axes = figure(table, 'Proxy CPU cost (median, error bars = min–max over reps; lower is better)')
    for ax, (scen, per) in zip(axes, table.items()):
        names = order(list(per), PROXIES)
        key = cost_key(scen)
        xlabel = 'CPU-s per GB' if key == 's_per_gb' else 'CPU-µs per request'
        hbars(ax, names, [stat(per[n], key) for n in names], xlabel, errorbars=True)
        ax.set_title(scen_title(scen), fontsize=10)
    save(fig, path)


def plot_latency(table, path):
    fig, axes = figure(table, 'Latency seen by the load generator (median over reps)')
    for ax, (scen, per) in zip(axes, table.items()):
        names = order(list(per), PROXIES)
        p50 = [stat(per[n], 'p50_ms') for n in names]
        p99 = [stat(per[n], 'p99_ms') for n in names]
        top = max([s[0] for s in p50 + p99 if s] or [1])
        for y, name, a, b in zip(range(len(names)), names, p50, p99):
            if a is None and b is None:
                ax.text(0, y, ' failed / no data', va='center', ha='left', fontsize=8, color='#d62728')
                continue
            # Two thin bars per proxy: p50 solid, p99 lighter and hatched.
            if a is not None:
                ax.barh(y - 0.18, a[0], height=0.34, color=colour(name))
                ax.text(a[0] + top * 0.01, y - 0.18, fmt_value(a[0]), va='center', fontsize=7)
            if b is not None:
                ax.barh(y + 0.18, b[0], height=0.34, color=colour(name), alpha=0.45, hatch='//')
                ax.text(b[0] + top * 0.01, y + 0.18, fmt_value(b[0]), va='center', fontsize=7)
        ax.set_yticks(range(len(names)), [short_label(n) for n in names], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.18)
        ax.set_xlabel('ms (solid = p50, hatched = p99)', fontsize=9)
        ax.grid(axis='x', alpha=0.3)
        ax.set_title(scen_title(scen), fontsize=10)
    save(fig, path)


def plots(results_json_path, out_dir):
    """Write throughput.png, cpu_cost.png and latency.png for one results.json; return their paths.
    Scenarios with no rows at all are left out; a proxy whose runs all failed shows 'failed'."""
    with open(results_json_path) as f:
        doc = json.load(f)
    table = cells(doc.get('results', []))
    if not table:
        return []
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for fn, name in ((plot_throughput, 'throughput.png'), (plot_cost, 'cpu_cost.png'),
                     (plot_latency, 'latency.png')):
        path = os.path.join(out_dir, name)
        fn(table, path)
        written.append(path)
    return written


def markdown_images(pngs, out_dir):
    """Markdown embedding each PNG by its path relative to out_dir (where report.md lives)."""
    lines = []
    for p in pngs:
        name = os.path.splitext(os.path.basename(p))[0]
        lines += [f'![{name}]({os.path.relpath(p, out_dir)})', '']
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('results_dir', help='a bench/results/<date> directory holding results.json')
    ap.add_argument('--out', default=None, help='where to write the PNGs (default: results_dir)')
    args = ap.parse_args()
    src = os.path.join(args.results_dir, 'results.json')
    if not os.path.exists(src):
        raise SystemExit(f'{src} not found')
    out = args.out or args.results_dir
    pngs = plots(src, out)
    if not pngs:
        raise SystemExit(f'{src} has no results to plot')
    print(markdown_images(pngs, out))
    sys.stderr.write('wrote ' + ', '.join(pngs) + '\n')


if __name__ == '__main__':
    main()
