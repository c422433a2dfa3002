#!/usr/bin/python3
"""Static checks of deploy/, for machines without Docker, Helm or a cluster (ours).

  deploy_lint.py REPO_ROOT

Checks: YAML and JSON syntax of every file; the Helm chart's templates (balanced actions and
blocks, every .Values path defined in values.yaml, every include defined, and each manifest
parsing as YAML with a Kubernetes shape after the template actions are blanked out); the
Prometheus rules with promtool; every Grafana panel's PromQL with promtool; the Dockerfile's
targets. Prints what it checked; exits non-zero with a list of problems. It is no substitute for
`helm lint` / `helm template` / `docker build`, which have not been run (deploy/README.md).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

root = sys.argv[1]
deploy = os.path.join(root, "deploy")
chart = os.path.join(deploy, "helm", "flotilla")
problems = []
checked = []


def problem(msg):
    problems.append(msg)


def load_yaml(path, multi=False):
    with open(path) as f:
        text = f.read()
    try:
        return list(yaml.safe_load_all(text)) if multi else yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem(f"{path}: not valid YAML: {e}")
        return None


# Plain YAML and JSON files.
for dirpath, _, files in os.walk(deploy):
    if os.path.join("helm", "flotilla", "templates") in dirpath:
        continue
    for name in files:
        path = os.path.join(dirpath, name)
        if name.endswith((".yaml", ".yml")):
            load_yaml(path, multi=True)
            checked.append(path)
        elif name.endswith(".json"):
            try:
                with open(path) as f:
                    json.load(f)
                checked.append(path)
            except ValueError as e:
                problem(f"{path}: not valid JSON: {e}")

# The chart.
meta = load_yaml(os.path.join(chart, "Chart.yaml")) or {}
for key in ("apiVersion", "name", "version", "appVersion"):
    if key not in meta:
        problem(f"Chart.yaml lacks {key}")
values = load_yaml(os.path.join(chart, "values.yaml")) or {}

tdir = os.path.join(chart, "templates")
templates = {n: open(os.path.join(tdir, n)).read() for n in sorted(os.listdir(tdir))}
defines = set()
for text in templates.values():
    defines.update(re.findall(r'{{-?\s*define\s+"([^"]+)"', text))

ACTION = re.compile(r"{{-?(.*?)-?}}", re.S)
for name, text in templates.items():
    where = f"templates/{name}"
    if text.count("{{") != text.count("}}"):
        problem(f"{where}: unbalanced {{{{ }}}}")
    opened = len(re.findall(r"{{-?\s*(if|range|with|define)\b", text))
    closed = len(re.findall(r"{{-?\s*end\s*-?}}", text))
    if opened != closed:
        problem(f"{where}: {opened} if/range/with/define blocks but {closed} end")
    for path in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
        node = values
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                problem(f"{where}: .Values.{path} is not in values.yaml")
                break
            node = node[part]
    for inc in re.findall(r'include\s+"([^"]+)"', text):
        if inc not in defines:
            problem(f"{where}: include \"{inc}\" is not defined")
    for ref in re.findall(r'BasePath\s+"/([^"]+)"', text):
        if ref not in templates:
            problem(f"{where}: refers to missing template {ref}")
    for ref in re.findall(r'\.Files\.Get\s+"([^"]+)"', text):
        if not os.path.exists(os.path.join(chart, ref)):
            problem(f"{where}: .Files.Get of missing {ref}")
    if not name.endswith(".yaml"):
        continue
    # Blank out the template: lines that are only actions go, inline actions become a scalar.
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("{{") and stripped.endswith("}}") and not ACTION.sub("", stripped).strip():
            continue
        lines.append(ACTION.sub("x", line))
    try:
        docs = [d for d in yaml.safe_load_all("\n".join(lines)) if d is not None]
    except yaml.YAMLError as e:
        problem(f"{where}: does not parse as YAML once actions are blanked: {e}")
        continue
    for d in docs:
        if not isinstance(d, dict) or not {"apiVersion", "kind", "metadata"} <= d.keys():
            problem(f"{where}: a document without apiVersion/kind/metadata")
        elif "name" not in (d.get("metadata") or {}):
            problem(f"{where}: {d['kind']} without metadata.name")
    checked.append(where)

# The RBAC the autoscaler needs, exactly (docs/autoscaler.md).
rbac = templates.get("autoscaler-rbac.yaml", "")
for needle in ('resources: ["deployments/scale"]', 'verbs: ["get", "patch"]', 'resources: ["deployments"]'):
    if needle not in rbac:
        problem(f"autoscaler-rbac.yaml lacks {needle}")

# The chart's copy of the rules is the same file.
with open(os.path.join(deploy, "prometheus", "flotilla-rules.yaml")) as a, open(os.path.join(chart, "files", "flotilla-rules.yaml")) as b:
    if a.read() != b.read():
        problem("helm/flotilla/files/flotilla-rules.yaml differs from prometheus/flotilla-rules.yaml")

# Prometheus rules and the dashboard's queries, with promtool.
promtool = shutil.which("promtool")
if promtool is None:
    print("promtool not found: PromQL not checked")
else:
    out = subprocess.run([promtool, "check", "rules", os.path.join(deploy, "prometheus", "flotilla-rules.yaml")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        problem("promtool check rules flotilla-rules.yaml:\n" + out.stdout + out.stderr)
    checked.append("promtool: prometheus/flotilla-rules.yaml")
    with open(os.path.join(deploy, "grafana", "flotilla-dashboard.json")) as f:
        dash = json.load(f)
    rules = []
    ids = set()
    for p in dash.get("panels", []):
        if p.get("id") in ids:
            problem(f"dashboard: duplicate panel id {p.get('id')}")
        ids.add(p.get("id"))
        for t in p.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")
            rules.append({"record": f"dashboard:panel{p['id']}_{t['refId']}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        tmp = f.name
    out = subprocess.run([promtool, "check", "rules", tmp], capture_output=True, text=True)
    os.unlink(tmp)
    if out.returncode != 0:
        problem("dashboard PromQL:\n" + out.stdout + out.stderr)
    checked.append(f"promtool: {len(rules)} dashboard queries")

# Dockerfile targets and the binaries they copy.
with open(os.path.join(deploy, "docker", "Dockerfile")) as f:
    docker = f.read()
stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", docker, re.M))
for target in ("build", "runtime", "worker", "gateway", "autoscaler"):
    if target not in stages:
        problem(f"Dockerfile lacks stage {target}")
built = re.search(r"cmake --build /build --target ([^\n&\\]+)", docker)
built = built.group(1).split() if built else []
for binary in re.findall(r"COPY --from=build /build/bin/(\S+)", docker):
    if binary not in built:
        problem(f"Dockerfile copies {binary} but does not build it")
checked.append("docker/Dockerfile")

for c in checked:
    print("ok", os.path.relpath(c, root) if os.path.isabs(c) else c)
for p in problems:
    print("PROBLEM", p)
sys.exit(1 if problems else 0)
