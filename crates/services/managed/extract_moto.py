"""Write AWS managed policy documents from moto's snapshot of them.

    python crates/services/managed/extract_moto.py Name [Name ...]

Reads `moto.iam.aws_managed_policies.aws_managed_policies_data` (the JSON
moto imports from AWS with `make aws_managed_policies`) and writes each
policy's default-version document as `<Name>.json` next to this script,
4-space indented, statement and action order unchanged. Prints the
version, path and update date of each, for SOURCES.md.
"""

import json
import sys
from pathlib import Path

from moto.iam.aws_managed_policies import aws_managed_policies_data

data = json.loads(aws_managed_policies_data)
here = Path(__file__).resolve().parent
for name in sys.argv[1:]:
    p = data[name]
    (here / f"{name}.json").write_text(json.dumps(p["Document"], indent=4) + "\n")
    print(f"{name}\t{p['DefaultVersionId']}\t{p['Path']}\t{p['UpdateDate']}")
