"""Read everything a user can read from a store, as a subprocess (possibly on a read-only mount).

    python reader_script.py STORE

Prints JSON {set: [count, sha256 of all values]} and the verify report; exits 0 when all reads succeed.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from click.testing import CliRunner  # noqa: E402

import features  # noqa: E402
from features.cli import cli  # noqa: E402


def main(location: str) -> None:
    out = {}
    with features.open_store(location) as store:
        for name in store.set_names():
            fs = store[name]
            digest = hashlib.sha256()
            everything = fs.read_all()
            for utt_id in fs.ids:
                one = fs.read(utt_id)
                if one.tobytes() != everything.get(utt_id).tobytes():
                    raise SystemExit(f"{name}/{utt_id}: read and read_all differ")
                digest.update(one.tobytes())
            fs.failures()
            out[name] = [fs.info.count, digest.hexdigest()]
    report = features.verify(location)
    for args in (["info", location], ["info", "--json", location], ["ls", location], ["verify", location]):
        result = CliRunner().invoke(cli, args)
        if result.exit_code != 0:
            raise SystemExit(f"features {' '.join(args)} failed: {result.output}")
    print(json.dumps({"sets": out, "ok": report.ok, "problems": report.problems}))


if __name__ == "__main__":
    main(sys.argv[1])
