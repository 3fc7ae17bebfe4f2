#!/usr/bin/env python3
"""Fetch Debian binary packages of a given suite (bookworm, trixie, sid) into a cache, without touching the host's
apt configuration: each suite gets its own sources list, list directory and apt cache under
<cache>/lab/apt/<suite>/ (`-o Dir::Etc::SourceList=... -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=...
-o Dir::Cache=...`). Nothing is installed; the .deb files land in <cache>/lab/debs/<suite>/.

A package already in the cache is reused as it is (a warm run needs no network and gets the same bytes, hence the
same digests); `apt-get update` of the suite runs only when a package is missing.

    debs.py [--cache /var/cache/kubesalt] --suite sid containerd runc      -> prints {"containerd": "<path>", ...}
"""

import argparse
import glob
import json
import os
import subprocess
import sys

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def say(msg):
    print(f"[debs] {msg}", file=sys.stderr, flush=True)


def apt_options(cache, suite):
    base = os.path.join(cache, "lab", "apt", suite)
    for d in ("lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    sources = os.path.join(base, "sources.list")
    line = f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n"
    if not os.path.exists(sources) or open(sources).read() != line:
        with open(sources, "w") as fh:
            fh.write(line)
    return ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={base}/lists", "-o", f"Dir::Cache={base}/cache",
            "-o", "APT::Sandbox::User=root"]


def cached(deb_dir, pkg):
    found = sorted(glob.glob(os.path.join(deb_dir, f"{pkg}_*.deb")))
    return found[-1] if found else None


def fetch(cache, suite, packages):
    """{package: path of its .deb} for ``packages`` of ``suite``, downloading only what the cache lacks."""
    deb_dir = os.path.join(cache, "lab", "debs", suite)
    os.makedirs(deb_dir, exist_ok=True)
    missing = [p for p in packages if not cached(deb_dir, p)]
    if missing:
        opts = apt_options(cache, suite)
        say(f"{suite}: apt-get update; apt-get download {' '.join(missing)}")
        subprocess.run(["apt-get", "-qq"] + opts + ["update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "-q"] + opts + ["download"] + missing, cwd=deb_dir, check=True,
                       stdout=subprocess.DEVNULL)
    out = {p: cached(deb_dir, p) for p in packages}
    lost = [p for p, path in out.items() if not path]
    if lost:
        raise SystemExit(f"debs.py: {suite} has no {' '.join(lost)}")
    return out


def resolve(cache, suite, packages):
    """The packages ``packages`` pull in on an empty system (Depends and Pre-Depends, no Recommends) as apt resolves
    them from the suite's lists: [package names], the requested ones included. apt only simulates (`install -s`
    against an empty dpkg status file): nothing is downloaded or installed. The suite's lists are fetched once when
    missing."""
    opts = apt_options(cache, suite)
    base = os.path.join(cache, "lab", "apt", suite)
    if not glob.glob(os.path.join(base, "lists", "*_Packages*")):
        say(f"{suite}: apt-get update")
        subprocess.run(["apt-get", "-qq"] + opts + ["update"], check=True, stdout=subprocess.DEVNULL)
    status = os.path.join(base, "empty-status")
    open(status, "w").close()
    res = subprocess.run(["apt-get", "-s", "-q"] + opts + ["-o", f"Dir::State::status={status}",
                                                           "-o", "Debug::NoLocking=1", "install",
                                                           "--no-install-recommends"] + sorted(packages),
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"debs.py: apt cannot resolve {' '.join(packages)} in {suite}:\n{res.stdout}{res.stderr}")
    names = sorted({line.split()[1] for line in res.stdout.splitlines() if line.startswith("Inst ")})
    missing = set(packages) - set(names)
    if missing:
        raise SystemExit(f"debs.py: apt's answer for {suite} lacks {' '.join(sorted(missing))}")
    return names


def deb_field(path, field="Version"):
    return subprocess.run(["dpkg-deb", "-f", path, field], check=True, capture_output=True,
                          text=True).stdout.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=os.environ.get("KUBESALT_CACHE", "/var/cache/kubesalt"))
    p.add_argument("--suite", required=True)
    p.add_argument("packages", nargs="+")
    args = p.parse_args()
    print(json.dumps(fetch(args.cache, args.suite, args.packages), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
