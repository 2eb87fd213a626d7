#!/usr/bin/env python3
"""Prints the kernel matrix from the result directories tests/kernels/matrix.sh wrote:

    matrix.py [--markdown FILE] DIR...

One row per probe × sub-item × need, one column per kernel (DIR), each cell the result of the
probe's `--plan` there: `loaded` (the first hook), `fallback` (a later one), `skipped` (no hook
on that kernel, with the reason), `failed` (chosen but refused), with the hook used. Then the
end-to-end tests per kernel. Exit status 1 when a plan failed, a probe's `--plan` did not run,
or a test failed; 0 otherwise.
"""

import json
import os
import re
import sys

SHORT = {"loaded": "ok", "fallback": "fallback", "skipped": "skipped", "failed": "FAILED"}


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def load(directory):
    """Plan lines and test results of one kernel."""
    kernel = read(os.path.join(directory, "kernel")).strip() or os.path.basename(directory)
    machine = read(os.path.join(directory, "machine")).strip()
    column = f"{kernel} ({machine})" if machine else kernel
    plans, problems, tests = {}, [], {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith("plan.") and name.endswith(".status"):
            probe = name[5:-7]
            status = read(path).strip()
            if status != "0":
                log = read(os.path.join(directory, f"plan.{probe}.log")).strip().splitlines()
                problems.append(f"{column}: {probe} --plan exited {status or '?'}: {' | '.join(log[-3:])}")
        elif name.startswith("plan.") and name.endswith(".jsonl"):
            for number, line in enumerate(read(path).splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    key = (row["probe"], row["subitem"] or "(core)", row["need"])
                    plans[key] = row
                except (ValueError, KeyError) as e:
                    problems.append(f"{column}: {name}:{number}: not a plan line ({e}): {line[:120]}")
        elif name.startswith("tests.") and name.endswith(".log"):
            suite = name[6:-4]
            for m in re.finditer(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", read(path), re.M):
                tests[f"{suite}::{m.group(1)}"] = m.group(2)
            if not re.search(r"^test result: ", read(path), re.M):
                problems.append(f"{column}: {suite}: the test binary did not finish")
    return column, plans, tests, problems


def cell(row):
    if row is None:
        return "—"
    result = SHORT.get(row.get("result"), row.get("result", "?"))
    hook = row.get("hook") or ""
    if row.get("result") in ("skipped", "failed"):
        detail = (row.get("detail") or "").replace("|", "/")
        return f"{result}: {detail[:80]}" if detail else result
    if row.get("result") == "fallback" and not hook:
        # The last variant of some needs loads nothing: the fields it fills stay empty.
        return "fallback: none (its fields stay empty)"
    return f"{result} {hook}".strip()


def main():
    args = sys.argv[1:]
    markdown = None
    if args[:1] == ["--markdown"]:
        markdown, args = args[1], args[2:]
    if not args:
        sys.exit(__doc__)
    kernels = [load(d) for d in args]
    keys = sorted({k for _, plans, _, _ in kernels for k in plans})
    header = ["probe", "sub-item", "need"] + [c for c, _, _, _ in kernels]
    rows = [list(k) + [cell(plans.get(k)) for _, plans, _, _ in kernels] for k in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    names = sorted({t for _, _, tests, _ in kernels for t in tests})
    if names:
        lines += ["", "| test | " + " | ".join(c for c, _, _, _ in kernels) + " |", "|---|" + "---|" * len(kernels)]
        lines += ["| " + t + " | " + " | ".join(tests.get(t, "—") for _, _, tests, _ in kernels) + " |" for t in names]
    problems = [p for _, _, _, ps in kernels for p in ps]
    # A refusal once, where it happened: the needs it took down with it say "not loaded".
    problems += [
        f"{column}: {'/'.join(k)}: failed: {row.get('detail', '')[:400]}"
        for column, plans, _, _ in kernels
        for k, row in plans.items()
        if row.get("result") == "failed" and "not loaded:" not in row.get("detail", "") and "the core was refused" not in row.get("detail", "")
    ]
    problems += [f"{column}: {t}: {r}" for column, _, tests, _ in kernels for t, r in tests.items() if r == "FAILED"]
    text = "\n".join(lines)
    print(text)
    if markdown:
        with open(markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if problems:
        print("\nProblems:", *problems, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
