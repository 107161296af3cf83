#!/usr/bin/env python3
"""Runs every shell command of the README and docs/ as a reader would, in their order.

The reader's path: README.md (quick start: a server on 127.0.0.1:50051, its admin token in
$TOKEN), then docs/api-guide.md, docs/risk.md, docs/operations.md, docs/testing.md and
bench/README.md, in one bash session (variables, aliases and files carry over, as in a reader's
shell), in a scratch directory that looks like the repository root (its tests/, examples/,
proto/, bench/, deploy/ and target/ are the checkout's). Each ```sh block's commands run as
written, with `set -eo pipefail`: a command that fails fails the run, naming its file and line.

What a reader's machine has and CI's lacks is supplied on PATH, never by editing a command:
  - grpcurl (not installable here) is a translation to buf curl of the grpcurl syntax the docs use
    (`-plaintext -H … -d … ADDRESS [list | describe SYMBOL | SERVICE/METHOD]`); a streaming
    `WatchEvents` runs for a few seconds, as a reader would watch it, and must not end by itself;
  - `ipledger` is the release binary; `cargo` is cargo on the checkout's manifest.

A command whose last comment says `# fails: REASON` must fail with REASON in its output (a
refusal the docs show on purpose). Commands that cannot run as written in CI are listed in RULES
below, each with what CI runs instead and why; a rule that matches no command fails the run, so a
rule outlives no edit of the docs. Every markdown file with a shell block must be on the path.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [
    "README.md",
    "docs/api-guide.md",
    "docs/risk.md",
    "docs/operations.md",
    "docs/testing.md",
    "bench/README.md",
]
SHELL_LANGS = {"sh", "bash", "shell"}
# Markdown with shell blocks that is no reader's instructions.
NOT_ON_THE_PATH = {
    "bench/RESULTS.md": "a log of measurements: its commands name the builds and data of their day",
}
# Steps CI runs anyway (tests/setup-and-test.sh): a command of docs/testing.md that is one of them
# is checked to be there, not run twice.
SETUP = REPO / "tests" / "setup-and-test.sh"
STREAM_SECONDS = 4
# The quick start's server goes before this doc: its recipes start servers of their own.
STOP_BEFORE = {"bench/README.md"}
# Paths outside the scratch directory that the docs' recipes write: removed before and after.
CLEAN = ["/tmp/bench-pg", "/tmp/bench-ha", "/tmp/ha-pg.out", "/tmp/p60k", "/tmp/p60k.jsonl"]
# The whole path, HA cluster and benchmarks included, ends within this (a hung command fails).
RUN_SECONDS_MAX = 1800

# (file, the command's start, what CI runs instead: None to skip, and why).
RULES = [
    ("README.md", "cargo run --release -- serve", "SERVE",
     "the quick start's server: started in the background, waited for, stopped at the end"),
    ("README.md", "bash tests/setup-and-test.sh", None, "CI itself (.ci/run runs it)"),
    ("docs/api-guide.md", "ipledger serve &", "SERVE",
     "a local server: the quick start's, already serving"),
    ("docs/operations.md", "cargo run --release --example ha_cluster  ",
     "timeout --preserve-status -s INT 45 cargo run --release --example ha_cluster",
     "up until Ctrl-C: CI sends the Ctrl-C (SIGINT) after a while; the cluster must stop cleanly"),
    ("docs/operations.md", "cargo run --release --example ha_cluster -- --for-seconds 600",
     "cargo run --release --example ha_cluster -- --for-seconds 5",
     "ten minutes up: CI keeps it up for 5 s"),
    ("docs/testing.md", "bash tests/setup-and-test.sh", None, "CI itself (.ci/run runs it)"),
    ("docs/testing.md", "IPLEDGER_SIM_SEEDS=100000", None,
     "hours of seeds on demand; CI runs the default 200 through cargo test"),
    ("docs/testing.md", "IPLEDGER_SIM_SEED=<seed>",
     "IPLEDGER_SIM_SEED=1 cargo test --test sim", "one seed again: seed 1 stands for the seed a failure names"),
    ("docs/testing.md", "IPLEDGER_FUZZ_CASES=2000000", None,
     "hours of cases on demand; CI runs the default count through cargo test"),
    ("docs/operations.md", "ipledger serve --witness", "RESTART",
     "the operator restarts the server with the witness named: CI stops the quick start's and starts this"),
    ("docs/operations.md", "ipledger token ", "OFFLINE",
     "offline, with the server stopped, as the docs say: CI stops the server, runs it, starts it again"),
    ("bench/README.md", "bash bench/side-by-side.sh   ",
     "bash bench/side-by-side.sh --pledges 2000 --seconds 2 --unary 500 --clients 8 --no-build",
     "the benchmark at its defaults takes ten minutes: CI runs it small, to keep the recipe working"),
]


def blocks(path):
    """(first line number, language, lines) of every fenced block."""
    lines = path.read_text(encoding="utf-8").split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\S*)", lines[i])
        if m:
            start, lang, body = i + 1, m.group(1), []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append((start + 1, lang, body))
        i += 1
    return out


def commands(first_line, body):
    """(line number, text) of every command of a shell block: continued lines joined, here-documents
    kept with their command, comment-only and blank lines left out."""
    out, i = [], 0
    while i < len(body):
        line = body[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        start, text = i, [line]
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        while text[-1].rstrip().endswith("\\") and i + 1 < len(body):
            i += 1
            text.append(body[i])
        if heredoc:
            while i + 1 < len(body) and body[i].strip() != heredoc.group(1):
                i += 1
                text.append(body[i])
        out.append((first_line + start, "\n".join(text)))
        i += 1
    return out


def normalized(command):
    """A command without comments, `--locked` and extra spaces: how it is compared with CI's steps."""
    words = []
    for line in command.split("\n"):
        line = re.sub(r"\s+#.*$", "", line).rstrip("\\ ")
        words += line.split()
    return " ".join(w for w in words if w != "--locked")


def setup_steps():
    text = SETUP.read_text(encoding="utf-8").replace("\\\n", " ")
    return {normalized(line) for line in text.split("\n") if line.strip() and not line.lstrip().startswith("#")}


def plan():
    """The script to run: every command with its source line, and what was run instead of what."""
    steps, used, report = setup_steps(), set(), []
    script = [
        # No -u: a reader's shell has it off, and the docs' helpers (risk.md's `ids`) rely on that.
        "set -eo pipefail",
        "shopt -s expand_aliases",
        'trap \'echo "docs: FAILED at $DOC_AT" >&2\' ERR',
    ]
    for doc in DOCS:
        if doc in STOP_BEFORE:
            script.append("ci_stop")
        for first, lang, body in blocks(REPO / doc):
            if lang not in SHELL_LANGS:
                continue
            for line, command in commands(first, body):
                where = f"{doc}:{line}"
                rule = next((r for r in RULES if r[0] == doc and command.startswith(r[1])), None)
                script.append(f"DOC_AT={shlex.quote(where)}; echo {shlex.quote('docs: ' + where)} >&2")
                if rule is not None:
                    used.add(RULES.index(rule))
                    _, _, instead, why = rule
                    report.append(f"{where}: {'skipped' if instead is None else 'ran ' + repr(instead)}: {why}")
                    if instead == "OFFLINE":
                        script.append(f"ci_stop\n{command}\nci_serve \"$CI_SERVE\"")
                    elif instead == "RESTART":
                        script.append(f"ci_stop\nci_serve {shlex.quote(command.split('#')[0].rstrip(' &'))}")
                    elif instead == "SERVE":
                        script.append(f"ci_serve {shlex.quote(command.split('#')[0].rstrip(' &'))}")
                    elif instead is not None:
                        script.append(instead)
                    continue
                if doc == "docs/testing.md" and normalized(command) in steps:
                    report.append(f"{where}: a step of tests/setup-and-test.sh, run there")
                    continue
                if doc == "docs/testing.md" and normalized(command).startswith("cargo test"):
                    sys.exit(f"docs: {where}: a test command that is not a step of {SETUP.name}: {command}")
                fails = re.search(r"#\s*fails:\s*([A-Z_]+)\s*$", command)
                if fails:
                    script.append(f"ci_fails {fails.group(1)} <<'CI_COMMAND'\n{command}\nCI_COMMAND")
                else:
                    script.append(command)
    stale = [r for i, r in enumerate(RULES) if i not in used]
    if stale:
        sys.exit(f"docs: rules that match no command (the docs changed?): {stale}")
    return "\n".join(script) + "\n", report


def check_every_doc_is_on_the_path():
    for path in sorted([*REPO.glob("*.md"), *REPO.glob("docs/*.md"), *REPO.glob("bench/*.md")]):
        doc = str(path.relative_to(REPO))
        if doc not in DOCS and doc not in NOT_ON_THE_PATH and any(lang in SHELL_LANGS for _, lang, _ in blocks(path)):
            sys.exit(f"docs: {doc} has shell commands but is not on the reader's path (DOCS)")


PRELUDE = r"""
# Runs the command on stdin, which must fail with the reason $1 in its output.
ci_fails() {
  local reason=$1 command out
  command=$(cat)
  if out=$(eval "$command" 2>&1); then
    echo "docs: expected a failure with $reason, got success: $out" >&2
    return 1
  fi
  grep -F -- "$reason" >/dev/null <<<"$out" || { echo "docs: expected $reason in: $out" >&2; return 1; }
}
# Starts a server in the background, out of the shell's job table (a doc's `kill %1` means its
# own job), unless one answers already.
ci_serve() {
  if ipledger health >/dev/null 2>&1; then echo "docs: serving already" >&2; return; fi
  CI_SERVE=$1
  ( setsid bash -c "$1" >"$CI_DIR/server.log" 2>&1 & echo $! >"$CI_DIR/server.pid" )
  for _ in $(seq 600); do ipledger health >/dev/null 2>&1 && return; sleep 0.2; done
  cat "$CI_DIR/server.log" >&2
  return 1
}
ci_stop() {
  kill -TERM -- "-$(cat "$CI_DIR/server.pid")"
  for _ in $(seq 300); do ipledger health >/dev/null 2>&1 || return 0; sleep 0.2; done
  return 1
}
"""

GRPCURL = r"""#!/usr/bin/env python3
# grpcurl's syntax as the docs use it, run with buf curl (grpcurl is not installable here); an
# error's details decoded as grpcurl shows them (ErrorInfo's reason and metadata, BadRequest's
# field violations), where buf curl prints them as base64.
import base64, json, os, signal, subprocess, sys

def varints(data):
    # (field number, bytes) of a protobuf message's length-delimited fields (all these types have).
    i, out = 0, []
    while i < len(data):
        key, i = varint(data, i)
        if key & 7 != 2:
            sys.exit("grpcurl (docs shim): unexpected wire type")
        size, i = varint(data, i)
        out.append((key >> 3, data[i:i + size]))
        i += size
    return out

def varint(data, i):
    value, shift = 0, 0
    while True:
        b = data[i]; i += 1
        value |= (b & 0x7F) << shift; shift += 7
        if b < 0x80:
            return value, i

def decoded(detail):
    raw = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    fields = varints(raw)
    if detail["type"] == "google.rpc.ErrorInfo":
        meta = {}
        for number, value in fields:
            if number == 3:
                kv = dict(varints(value))
                meta[kv.get(1, b"").decode()] = kv.get(2, b"").decode()
        text = {n: v.decode() for n, v in fields if n in (1, 2)}
        return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": text.get(1, ""),
                "domain": text.get(2, ""), "metadata": meta}
    if detail["type"] == "google.rpc.BadRequest":
        violations = [{"field": d.get(1, b"").decode(), "description": d.get(2, b"").decode()}
                      for d in (dict(varints(v)) for n, v in fields if n == 1)]
        return {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}
    return detail

args, headers, data = sys.argv[1:], [], None
while args and args[0].startswith("-"):
    flag = args.pop(0)
    if flag == "-plaintext":
        continue
    if flag == "-H":
        value = args.pop(0); headers += ["-H", value, "--reflect-header", value]
    elif flag == "-d":
        value = args.pop(0); data = "@-" if value == "@" else value
    else:
        sys.exit(f"grpcurl (docs shim): unsupported flag {flag}")
address, what = args[0], args[1:]
base = ["buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge", *headers]
if what == ["list"]:
    sys.exit(subprocess.run([*base, "--list-services", f"http://{address}"]).returncode)
if what[:1] == ["describe"]:
    # The symbol's file from the server's reflection, as grpcurl resolves it before printing it.
    body = json.dumps({"fileContainingSymbol": what[1]})
    out = subprocess.run([*base, "-d", body, f"http://{address}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"],
                         capture_output=True, text=True)
    if out.returncode != 0 or "fileDescriptorResponse" not in out.stdout:
        sys.exit(out.stdout + out.stderr)
    print(f"{what[1]}: found by reflection")
    sys.exit(0)
command = [*base, *(["-d", data] if data else []), f"http://{address}/{what[0]}"]
if what[0].endswith("/WatchEvents"):
    # A watch streams until stopped: watch a few seconds; ending before is a failure. buf curl
    # runs under node: the whole session goes at the end, not only its first process.
    watch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = watch.communicate(timeout=__STREAM__)
        sys.exit(f"grpcurl (docs shim): the watch ended: {out.decode()}{err.decode()}")
    except subprocess.TimeoutExpired:
        os.killpg(watch.pid, signal.SIGTERM)
        out, _ = watch.communicate()
        print(out.decode())
        sys.exit(0)
out = subprocess.run(command, capture_output=True, text=True)
if out.returncode == 0:
    print(out.stdout, end="")
    sys.exit(0)
try:
    # buf curl writes an error status to stderr as JSON.
    error = json.loads(out.stderr)
except ValueError:
    sys.exit(out.stdout + out.stderr)
print("ERROR:")
print(f"  Code: {error.get('code')}")
print(f"  Message: {error.get('message')}")
if error.get("details"):
    print("  Details:")
for i, detail in enumerate(error.get("details", []), 1):
    print(f"  {i}) {json.dumps(decoded(detail), ensure_ascii=False)}")
sys.exit(1)
"""

CARGO = r"""#!/usr/bin/env bash
# cargo on the checkout's manifest, from the scratch directory.
set -euo pipefail
sub=$1; shift
args=(); rest=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then rest=("$@"); break; fi
  args+=("$1"); shift
done
exec __CARGO__ "$sub" --manifest-path __REPO__/Cargo.toml "${args[@]}" "${rest[@]}"
"""


def scratch(directory):
    """The scratch directory: the checkout's folders linked in, and the PATH's shims."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    for name in ["tests", "examples", "proto", "bench", "deploy", "docs"]:
        (directory / name).symlink_to(REPO / name)
    (directory / "target").symlink_to(target)
    bin_dir = directory / ".ci-bin"
    bin_dir.mkdir()
    cargo = subprocess.run(["bash", "-c", "command -v cargo"], capture_output=True, text=True, check=True)
    shims = {
        "grpcurl": GRPCURL.replace("__STREAM__", str(STREAM_SECONDS)),
        "cargo": CARGO.replace("__CARGO__", cargo.stdout.strip()).replace("__REPO__", str(REPO)),
    }
    for name, text in shims.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "ipledger").symlink_to(target / "release" / "ipledger")
    return bin_dir


def stop_group(pgid):
    """Stops what the docs' commands left running in the run's process group (a block that failed
    after starting a cluster in the background): Ctrl-C first, which the HA example answers by
    stopping every process it started, then SIGKILL after a grace."""
    for sig, grace_s in [(signal.SIGINT, 60), (signal.SIGKILL, 5)]:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def clean():
    for path in CLEAN:
        subprocess.run(["rm", "-rf", path], check=True)


def main():
    check_every_doc_is_on_the_path()
    script, report = plan()
    # What the docs run, built first (the binary and the HA example): a command run under a
    # timeout (the cluster's Ctrl-C) must not spend it compiling.
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--bins", "--example", "ha_cluster"],
                   cwd=REPO, check=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipledger-docs.") as tmp:
        directory = Path(tmp)
        bin_dir = scratch(directory)
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", CI_DIR=str(directory))
        env.pop("IPLEDGER_TOKEN_FILE", None)
        env.pop("IPLEDGER_SERVER", None)
        if subprocess.run(["bash", "-c", "ipledger health"], env=env, capture_output=True).returncode == 0:
            sys.exit("docs: a server answers on 127.0.0.1:50051 already: stop it first")
        (directory / "run.sh").write_text(PRELUDE + script)
        clean()
        run = subprocess.Popen(["bash", "run.sh"], cwd=directory, env=env, start_new_session=True)
        try:
            returncode = run.wait(timeout=RUN_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            print(f"docs: still running after {RUN_SECONDS_MAX} s: stopped")
            os.killpg(run.pid, signal.SIGKILL)
            returncode = 1
        finally:
            stop_group(run.pid)
            clean()
            pid_file = directory / "server.pid"
            if pid_file.exists():
                try:
                    os.killpg(int(pid_file.read_text()), signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for line in report:
            print(f"docs: {line}")
        if returncode != 0:
            log = directory / "server.log"
            if log.exists():
                print("docs: the server's log:\n" + log.read_text()[-4000:])
            print("docs commands: 0 passed, 1 failed")
            sys.exit(1)
    print(f"docs commands: 1 passed, 0 failed ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
