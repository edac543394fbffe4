"""What the operators do with our objects, modelled from their own source.

No schema catches these: every manifest here validates strictly and yet
would fail on a real cluster, or survive less than docs/operations.md says.
Each check returns its violations (empty: the fact holds), so a test can run
it on the real render and on a mutated copy that must fail. The upstream
file each model comes from is named where it is used; the versions are the
ones pinned in k8s/operator-versions.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path

from invariants import ZONE, name, of_kind, selector_matches

DATA = Path(__file__).parent / "data"


def _ns(o):
    return (o.get("metadata") or {}).get("namespace")


def _labels(o):
    return (o.get("metadata") or {}).get("labels") or {}


def _configmap(objs, cm_name, namespace="drop"):
    """A ConfigMap by its generator name (kustomize adds a hash suffix)."""
    for cm in of_kind(objs, "ConfigMap"):
        n = cm["metadata"]["name"]
        if _ns(cm) in (namespace, None) and (n == cm_name or re.fullmatch(re.escape(cm_name) + r"-[a-z0-9]{10}", n)):
            return cm
    return None


# --- 1. Rook: ObjectBucketClaim additionalConfig -------------------------------------
# rook pkg/operator/ceph/object/bucket/util.go (additionalConfigSpecFromMap)
# refuses every key that ROOK_OBC_ALLOW_ADDITIONAL_CONFIG_FIELDS does not
# list, and its default is "maxObjects,maxSize"
# (pkg/operator/ceph/controller/controller_utils.go). The claim then never
# gets its bucket, nor the Secret the services read.
ROOK_OBC_DEFAULT_ALLOWED = frozenset({"maxObjects", "maxSize"})


def check_obc_additional_config(objs, allowed=ROOK_OBC_DEFAULT_ALLOWED) -> list[str]:
    out = []
    claims = of_kind(objs, "ObjectBucketClaim")
    if not claims:
        return ["no ObjectBucketClaim rendered"]
    for c in claims:
        extra = sorted(set((c.get("spec") or {}).get("additionalConfig") or {}) - allowed)
        if extra:
            out.append(f"{name(c)}: additionalConfig {extra} is refused by a default Rook operator "
                       f"(allowed: {sorted(allowed)}); put it through the S3 API from the setup Job")
    return out


def lifecycle_days(objs, setup_configmap) -> str | None:
    cm = _configmap(objs, setup_configmap)
    return ((cm or {}).get("data") or {}).get("VOUCHER_EXPIRY_DAYS")


def check_rgw_setup_job(objs) -> list[str]:
    """The Rook render runs rgw_setup.py (lifecycle, topic credentials,
    notification re-creation) from the drop-rgw-setup ConfigMap, with the
    claim's keys, the notify user's keys and the expiry."""
    out = []
    cm = _configmap(objs, "drop-rgw-setup")
    if not cm or "rgw_setup.py" not in (cm.get("data") or {}):
        return ["no ConfigMap drop-rgw-setup with rgw_setup.py"]
    jobs = [j for j in of_kind(objs, "Job")
            if any((v.get("configMap") or {}).get("name") == cm["metadata"]["name"]
                   for v in j["spec"]["template"]["spec"].get("volumes") or [])]
    if not jobs:
        return ["no Job mounts drop-rgw-setup"]
    for j in jobs:
        c = j["spec"]["template"]["spec"]["containers"][0]
        if not any("rgw_setup.py" in a for a in (c.get("command") or []) + (c.get("args") or [])):
            out.append(f"{name(j)}: does not run rgw_setup.py")
        env = {e["name"]: e for e in c.get("env") or []}
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NOTIFY_USERNAME", "NOTIFY_PASSWORD",
                    "VOUCHER_EXPIRY_DAYS", "BUCKET_NAME", "S3_ENDPOINT", "TOPIC_NAME", "CLAIM_NAME"):
            if var not in env:
                out.append(f"{name(j)}: no env {var}")
        if j["spec"]["template"]["spec"].get("automountServiceAccountToken") is not True:
            out.append(f"{name(j)}: needs its service account token to patch the topic and the claim")
    return out


# --- 2. Ceph pools across zones ---------------------------------------------------
def ceph_min_size(pool: dict) -> int:
    """Ceph's default min_size (src/mon/OSDMonitor.cc, prepare_pool_size):
    replicated: size - size/2; erasure: k + min(1, m - 1). A pool parameter
    min_size overrides it."""
    explicit = (pool.get("parameters") or {}).get("min_size")
    if explicit is not None:
        return int(explicit)
    if "erasureCoded" in pool:
        k, m = pool["erasureCoded"]["dataChunks"], pool["erasureCoded"]["codingChunks"]
        return k + min(1, m - 1)
    size = pool["replicated"]["size"]
    return size - size // 2


def pool_after_zone_loss(pool: dict, zones: int = 3) -> tuple[int, int, int] | str:
    """(copies or chunks left, what I/O needs = min_size, what keeps one
    more failure survivable) after a zone is lost, or why the pool cannot
    even be placed. With failureDomain zone CRUSH puts one copy (chunk) per
    zone (rook Documentation/CRDs/Block-Storage/ceph-block-pool-crd.md)."""
    if pool.get("failureDomain") != "zone":
        return f"failureDomain {pool.get('failureDomain', 'host')!r}: copies may share a zone"
    if "erasureCoded" in pool:
        k, m = pool["erasureCoded"]["dataChunks"], pool["erasureCoded"]["codingChunks"]
        width, readable = k + m, k
    else:
        width, readable = pool["replicated"]["size"], 1
    if width > zones:
        return f"{width} copies/chunks need {width} zones, there are {zones}"
    return width - 1, ceph_min_size(pool), readable + 1


def check_ceph_pools(objs, zones: int = 3) -> list[str]:
    out = []
    stores = of_kind(objs, "CephObjectStore")
    if not stores:
        return ["no CephObjectStore rendered"]
    for s in stores:
        for which in ("metadataPool", "dataPool"):
            pool = (s.get("spec") or {}).get(which) or {}
            r = pool_after_zone_loss(pool, zones)
            if isinstance(r, str):
                out.append(f"{name(s)} {which}: {r}")
                continue
            left, min_size, redundant = r
            if left < min_size:
                out.append(f"{name(s)} {which}: a zone leaves {left}, below min_size {min_size}: I/O stops")
            if left < redundant:
                out.append(f"{name(s)} {which}: a zone leaves {left}, no redundancy: one more failure "
                           "and the data is unavailable")
    return out


# --- 3. MinIO erasure sets across zones -------------------------------------------
SET_SIZES = range(2, 17)


def minio_set_size(servers: int, drives_per_server: int) -> int:
    """The erasure set size MinIO picks for one pool of `servers` hosts with
    `drives_per_server` drives each (minio cmd/endpoint-ellipses.go:
    getSetIndexes, possibleSetCountsWithSymmetry with the host count, and
    commonSetDriveCount)."""
    total = servers * drives_per_server
    counts = [s for s in SET_SIZES if total % s == 0]
    if not counts:
        raise ValueError(f"{total} drives fit no erasure set size")
    if servers > 1:
        counts = [s for s in counts if (servers % s == 0 if servers > s else s % servers == 0)]
        if not counts:
            raise ValueError(f"{servers} servers x {drives_per_server} drives: no symmetric set size")
    if total < counts[-1]:
        return total
    best, prev = None, total // counts[0]
    for s in counts:
        if total // s <= prev:
            prev, best = total // s, s
    return best


def minio_default_parity(set_size: int) -> int:
    """minio internal/config/storageclass/storage-class.go DefaultParityBlocks."""
    return {1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3}.get(set_size, 4)


def minio_sets(servers: int, drives_per_server: int) -> list[list[int]]:
    """For each erasure set, the server index of each of its drives. The
    operator passes `host-{0...S-1}/export{0...V-1}` (minio/operator
    pkg/apis/minio.min.io/v2/helper.go); MinIO's ellipses expansion turns the
    last pattern (the host) fastest (argExpander, minio/pkg ellipses), so
    consecutive endpoints go round the servers, and sets are cut from
    consecutive endpoints (endpointSet.Get)."""
    n = minio_set_size(servers, drives_per_server)
    order = [host for _drive in range(drives_per_server) for host in range(servers)]
    return [order[i:i + n] for i in range(0, len(order), n)]


def minio_quorums(set_size: int, parity: int) -> tuple[int, int]:
    """(read quorum, write quorum) of one set: data = size - parity, and the
    write quorum is data + 1 when data == parity (minio cmd/erasure-object.go,
    putObject)."""
    data = set_size - parity
    return data, data + 1 if data == parity else data


def max_per_zone(servers: int, spread: dict | None) -> tuple[int, str]:
    """Most servers one zone can receive under the pool's zone spread."""
    if not spread or spread.get("whenUnsatisfiable") != "DoNotSchedule":
        return servers, "no hard zone spread: all servers may land in one zone"
    zones = spread.get("minDomains")
    if not zones or zones < 3:
        return servers, "no minDomains >= 3: with two zones the spread puts half the servers in each"
    skew = spread.get("maxSkew", 1)
    # One zone holds x, every other at least x - skew: x + (z-1)(x-skew) <= servers.
    return (servers + (zones - 1) * skew) // zones, f"maxSkew {skew} over {zones} zones"


def check_minio_zone_loss(objs) -> list[str]:
    """Losing the fullest zone must leave every erasure set with its read
    and write quorum."""
    out = []
    tenants = of_kind(objs, "Tenant")
    if not tenants:
        return ["no MinIO Tenant rendered"]
    for t in tenants:
        env = {e.get("name"): e.get("value") for e in (t.get("spec") or {}).get("env") or []}
        for pool in (t.get("spec") or {}).get("pools") or []:
            where = f"{name(t)} pool {pool.get('name')}"
            s, v = pool.get("servers", 1), pool.get("volumesPerServer", 1)
            sets = minio_sets(s, v)
            parity = minio_default_parity(len(sets[0]))
            m = re.fullmatch(r"EC:(\d+)", env.get("MINIO_STORAGE_CLASS_STANDARD") or "")
            if m:
                parity = int(m.group(1))
            read_q, write_q = minio_quorums(len(sets[0]), parity)
            spreads = [c for c in pool.get("topologySpreadConstraints") or [] if c.get("topologyKey") == ZONE]
            x, why = max_per_zone(s, spreads[0] if spreads else None)
            for i, members in enumerate(sets):
                # The worst zone holds the x servers with most drives of this set.
                per_server = sorted((members.count(h) for h in set(members)), reverse=True)
                lost = sum(per_server[:x])
                left = len(members) - lost
                if left < write_q or left < read_q:
                    out.append(f"{where}: {s}x{v} drives, set {i} of {len(members)} (EC:{parity}, write quorum "
                               f"{write_q}): a zone with {x} servers ({why}) takes {lost} drives, leaves {left}")
    return out


# --- 4. MinIO environment names ---------------------------------------------------
# Subsystems with named targets take `_<TARGET>` after the variable
# (minio internal/config/notify/parse.go, e.g. GetNotifyAMQP).
TARGET_PREFIXES = ("MINIO_NOTIFY_", "MINIO_LOGGER_WEBHOOK_", "MINIO_AUDIT_WEBHOOK_", "MINIO_AUDIT_KAFKA_")


def minio_env_names(release: str) -> frozenset[str]:
    path = DATA / f"minio-env-{release}.txt"
    return frozenset(line.strip() for line in path.read_text().splitlines()
                     if line.strip() and not line.startswith("#"))


def minio_release(objs) -> str:
    image = of_kind(objs, "Tenant")[0]["spec"]["image"]
    return image.rsplit(":", 1)[1]


def unknown_minio_names(names, known) -> list[str]:
    out = []
    for n in names:
        if n in known:
            continue
        base = n.rsplit("_", 1)[0]
        if base in known and base.startswith(TARGET_PREFIXES):
            continue  # <NAME>_<TARGET>
        out.append(n)
    return out


def check_minio_env(objs, extra_names=()) -> list[str]:
    """Every MINIO_* name the Tenant sets (and the configuration Secret in
    the docs writes) is one MinIO reads, as is or with a target suffix."""
    tenants = of_kind(objs, "Tenant")
    if not tenants:
        return ["no MinIO Tenant rendered"]
    known = minio_env_names(minio_release(objs))
    names = [e["name"] for t in tenants for e in t["spec"].get("env") or [] if e["name"].startswith("MINIO_")]
    names += list(extra_names)
    return [f"MinIO does not read {n} (not in its source at {minio_release(objs)})"
            for n in unknown_minio_names(names, known)]


def docs_minio_names(text: str) -> list[str]:
    """The `export MINIO_...=` lines of the config.env recipe in the docs."""
    return re.findall(r"^export (MINIO_[A-Z0-9_]+)=", text, re.M)


# --- 5. Names the operators own ------------------------------------------------------
def operator_objects(objs) -> list[tuple[str, str, str, str]]:
    """(kind, namespace, name, why) of the objects the operators create for
    our custom resources, as their sources name them."""
    out = []
    for d in of_kind(objs, "Dragonfly"):
        n, ns, spec = d["metadata"]["name"], _ns(d), d.get("spec") or {}
        src = "dragonfly-operator internal/resources/resources.go"
        out += [("StatefulSet", ns, n, src), ("Service", ns, n, src)]
        if spec.get("replicas", 1) > 1:
            out.append(("PodDisruptionBudget", ns, n, src))
        if spec.get("networkPolicyEnabled", True):
            out.append(("NetworkPolicy", ns, n, src))
        else:
            out.append(("NetworkPolicy", ns, n, "deleted by dragonfly-operator internal/controller/dragonfly_instance.go "
                        "while networkPolicyEnabled is false"))
    for c in of_kind(objs, "Cluster"):
        n, ns = c["metadata"]["name"], _ns(c)
        src = "cloudnative-pg pkg/specs/poddisruptionbudget.go, api/v1/cluster_types.go"
        out += [("PodDisruptionBudget", ns, n, src), ("PodDisruptionBudget", ns, n + "-primary", src)]
        out += [("Service", ns, n + sfx, src) for sfx in ("-rw", "-ro", "-r")]
    return out


def check_operator_owned_names(objs) -> list[str]:
    out = []
    ours = {(o.get("kind"), _ns(o), o["metadata"]["name"]) for o in objs}
    for kind, ns, n, why in operator_objects(objs):
        if (kind, ns, n) in ours:
            out.append(f"{kind}/{n}: the operator owns this name ({why}); ours and its would undo each other")
    # A Dragonfly whose pods our NetworkPolicies restrict must not get the
    # operator's policy too: policies add up, and its admits the namespace.
    for d in of_kind(objs, "Dragonfly"):
        pods = dragonfly_pod_labels(d)
        ours_np = [p for p in of_kind(objs, "NetworkPolicy")
                   if _ns(p) == _ns(d) and selector_matches(p["spec"].get("podSelector"), pods)]
        if ours_np and (d.get("spec") or {}).get("networkPolicyEnabled", True):
            out.append(f"{name(d)}: networkPolicyEnabled is not false, so the operator's NetworkPolicy "
                       f"(every pod of the namespace on 6379) widens {name(ours_np[0])}")
    return out


def dragonfly_pod_labels(d) -> dict:
    """dragonfly-operator internal/resources/const.go: app=<name>,
    app.kubernetes.io/name=dragonfly, app.kubernetes.io/part-of=dragonfly."""
    return {"app": d["metadata"]["name"], "app.kubernetes.io/name": "dragonfly",
            "app.kubernetes.io/part-of": "dragonfly"}


def pod_groups(objs) -> list[tuple[str, str, dict, int]]:
    """(what, namespace, pod labels, budgets the operators add) of every set
    of pods that should have exactly one PodDisruptionBudget."""
    out = []
    for d in of_kind(objs, "Deployment"):
        out.append((name(d), _ns(d), d["spec"]["template"]["metadata"].get("labels") or {}, 0))
    for d in of_kind(objs, "Dragonfly"):
        out.append((name(d), _ns(d), dragonfly_pod_labels(d), 1 if d["spec"].get("replicas", 1) > 1 else 0))
    for t in of_kind(objs, "Tenant"):
        out.append((name(t), _ns(t), {"v1.min.io/tenant": t["metadata"]["name"]}, 0))
    for r in of_kind(objs, "RabbitmqCluster"):
        out.append((name(r), _ns(r), {"app.kubernetes.io/name": r["metadata"]["name"],
                                      "app.kubernetes.io/component": "rabbitmq"}, 0))
    for s in of_kind(objs, "CephObjectStore"):
        # rook pkg/operator/ceph/object/spec.go labels. Rook's own budget
        # (disruption/clusterdisruption/pools.go) exists only if the
        # CephCluster sets managePodBudgets, which is not ours to rely on,
        # and Rook creates it only when no budget named rook-ceph-rgw-<store>
        # exists (static_pdb.go). So ours must carry that name: under any
        # other, Rook may add its own beside it.
        n = s["metadata"]["name"]
        labels = {"app": "rook-ceph-rgw", "rgw": n, "rook_object_store": n}
        covering = [p for p in of_kind(objs, "PodDisruptionBudget")
                    if _ns(p) == _ns(s) and selector_matches(p["spec"].get("selector"), labels)]
        named = any(p["metadata"]["name"] == f"rook-ceph-rgw-{n}" for p in covering)
        out.append((name(s) + " gateways", _ns(s), labels, 0 if named or not covering else 1))
    return out


def check_one_budget_each(objs) -> list[str]:
    """Every pod set has exactly one PodDisruptionBudget, counting those the
    operators make: none leaves drains unguarded, two make the eviction API
    refuse every eviction of those pods."""
    out = []
    for what, ns, labels, theirs in pod_groups(objs):
        mine = [p for p in of_kind(objs, "PodDisruptionBudget")
                if _ns(p) == ns and selector_matches(p["spec"].get("selector"), labels)]
        total = len(mine) + theirs
        if total != 1:
            out.append(f"{what}: {total} PodDisruptionBudgets ({[name(p) for p in mine]} + {theirs} by the operator)")
    for c in of_kind(objs, "Cluster"):
        pods = {"cnpg.io/cluster": c["metadata"]["name"], "cnpg.io/podRole": "instance"}
        for p in of_kind(objs, "PodDisruptionBudget"):
            if _ns(p) == _ns(c) and selector_matches(p["spec"].get("selector"), pods):
                out.append(f"{name(p)}: CloudNativePG makes the budgets of {name(c)}")
    return out


# --- 7. The broker user whose password Rook logs ------------------------------------
SAMPLE_EXCHANGES_AND_QUEUES = ["s3.events", "orders", "orders.dlx", "orders.dead", "amq.topic", "amq.default",
                               "pdf-generator.orders", "pdf-generator.s3-events", "s3.events2", "xs3.events"]


def _grants(pattern: str) -> list[str]:
    """The sample names a RabbitMQ permission regex grants (RabbitMQ matches
    the regex anywhere in the name, so anchors matter)."""
    rx = re.compile(pattern)
    return [n for n in SAMPLE_EXCHANGES_AND_QUEUES if pattern and rx.search(n)]


def notify_secret_of_topic_job(objs) -> str | None:
    for j in of_kind(objs, "Job"):
        for c in j["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env") or []:
                if e["name"] == "NOTIFY_PASSWORD":
                    return e["valueFrom"]["secretKeyRef"]["name"]
    return None


def check_topic_user_publish_only(objs) -> list[str]:
    """The user whose credentials go into the CephBucketTopic URI may only
    publish to s3.events with routing key voucher-events."""
    secret = notify_secret_of_topic_job(objs)
    if not secret:
        return ["no Job writes broker credentials into the topic"]
    users = [u for u in of_kind(objs, "User") if (u["spec"].get("importCredentialsSecret") or {}).get("name") == secret]
    if not users:
        return [f"no messaging-topology User imports {secret}"]
    out = []
    for u in users:
        un = u["metadata"]["name"]
        if u["spec"].get("tags"):
            out.append(f"{name(u)}: tags {u['spec']['tags']} (management rights)")
        perms = [p for p in of_kind(objs, "Permission") if (p["spec"].get("userReference") or {}).get("name") == un]
        if not perms:
            out.append(f"{name(u)}: no Permission (a user without one can do nothing, nor publish)")
        for p in perms:
            rights = p["spec"]["permissions"]
            for right, want in (("configure", []), ("write", ["s3.events"]), ("read", [])):
                got = _grants(rights.get(right, ""))
                if got != want:
                    out.append(f"{name(p)}: {right} {rights.get(right)!r} grants {got}, not {want}")
        tps = [t for t in of_kind(objs, "TopicPermission")
               if (t["spec"].get("userReference") or {}).get("name") == un
               and t["spec"]["permissions"].get("exchange") == "s3.events"]
        if not tps:
            out.append(f"{name(u)}: no TopicPermission on s3.events: any routing key may be published")
        for t in tps:
            w, r = t["spec"]["permissions"].get("write", ""), t["spec"]["permissions"].get("read", "")
            keys = ["voucher-events", "order.reserved", "voucher-events.x", "#"]
            if [k for k in keys if w and re.search(w, k)] != ["voucher-events"] or (r and r != "^$"):
                out.append(f"{name(t)}: write {w!r} / read {r!r} is wider than the key voucher-events")
    return out


# --- 9. Readiness that tolerates a slow check --------------------------------------------
def check_probes(objs, min_window=15) -> list[str]:
    out = []
    for d in of_kind(objs, "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            r, lv = c.get("readinessProbe") or {}, c.get("livenessProbe") or {}
            cn = f"{name(d)} container {c['name']}"
            ft, period = r.get("failureThreshold", 3), r.get("periodSeconds", 10)
            if ft < 3:
                out.append(f"{cn}: readiness failureThreshold {ft}: one or two slow answers take the pod out")
            if ft * period < min_window:
                out.append(f"{cn}: readiness turns unready after {ft * period}s < {min_window}s")
            if r.get("timeoutSeconds", 1) < 2:
                out.append(f"{cn}: readiness timeout {r.get('timeoutSeconds', 1)}s")
            rpath = (r.get("httpGet") or {}).get("path")
            lpath = (lv.get("httpGet") or {}).get("path")
            if lpath and lpath == rpath or lpath == "/readyz":
                out.append(f"{cn}: liveness probes {lpath}: a dependency outage would restart every pod")
    return out


# --- 10. Smaller points ----------------------------------------------------------------
def _store_of_endpoint(endpoint: str):
    """(namespace, pod labels, pod port, source) of the object store behind
    an S3 endpoint, or None."""
    host = re.sub(r"^https?://", "", endpoint).split("/")[0].split(":")[0]
    parts = host.split(".")
    m = re.fullmatch(r"rook-ceph-rgw-(.+)", parts[0])
    if m:
        return (parts[1] if len(parts) > 1 else None, {"app": "rook-ceph-rgw", "rgw": m.group(1)}, 8080,
                "rook pkg/operator/ceph/object/config.go rgwPortInternalPort")
    if parts[0] == "minio":
        return (parts[1] if len(parts) > 1 else None, None, 9000,
                "minio/operator pkg/apis/minio.min.io/v2/constants.go MinIOPort")
    return None


def _egress_allows(policy, ns, peer_ns, labels, port) -> bool:
    for rule in policy["spec"].get("egress") or []:
        ports = [p.get("port") for p in rule.get("ports") or []]
        if ports and port not in ports:
            continue
        for peer in rule.get("to") or []:
            pns = ((peer.get("namespaceSelector") or {}).get("matchLabels") or {}).get("kubernetes.io/metadata.name")
            if "namespaceSelector" in peer and pns is None:
                continue
            if (pns or ns) != peer_ns:
                continue
            sel = peer.get("podSelector")
            if labels is None:
                if sel and "v1.min.io/tenant" in (sel.get("matchLabels") or {}):
                    return True
            elif sel is not None and selector_matches(sel, labels):
                return True
    return False


def check_store_egress(objs) -> list[str]:
    """Each service may open connections to the object store's pods on the
    port those pods listen on (not the Service's port)."""
    out = []
    for d in of_kind(objs, "Deployment"):
        ns = _ns(d) or "drop"
        labels = d["spec"]["template"]["metadata"]["labels"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        endpoint = None
        for src in c.get("envFrom") or []:
            cm = next((m for m in of_kind(objs, "ConfigMap")
                       if m["metadata"]["name"] == (src.get("configMapRef") or {}).get("name")), None)
            endpoint = ((cm or {}).get("data") or {}).get("S3_ENDPOINT") or endpoint
        if not endpoint:
            out.append(f"{name(d)}: no S3_ENDPOINT")
            continue
        store = _store_of_endpoint(endpoint)
        if not store:
            out.append(f"{name(d)}: unknown object store {endpoint}")
            continue
        sns, slabels, port, src = store
        sns = sns or ns
        policies = [p for p in of_kind(objs, "NetworkPolicy") if _ns(p) in (ns, None)
                    and "Egress" in (p["spec"].get("policyTypes") or [])
                    and selector_matches(p["spec"].get("podSelector"), labels)]
        if policies and not any(_egress_allows(p, ns, sns, slabels, port) for p in policies):
            out.append(f"{name(d)}: no egress to {endpoint}'s pods on port {port} ({src})")
    return out


def check_monitoring_selected(objs, label=("release", "kube-prometheus-stack")) -> list[str]:
    """Every monitor and rule carries the label the stack's Prometheus selects
    on, and the dashboard ConfigMap the label its Grafana sidecar loads."""
    out = []
    k, v = label
    for o in objs:
        if o.get("kind") in ("ServiceMonitor", "PodMonitor", "PrometheusRule") and _labels(o).get(k) != v:
            out.append(f"{name(o)}: no label {k}={v}: a default kube-prometheus-stack ignores it")
    dashboards = [cm for cm in of_kind(objs, "ConfigMap") if _labels(cm).get("grafana_dashboard") == "1"]
    if not dashboards:
        out.append("no ConfigMap labelled grafana_dashboard=1")
    return out


# Ingress controller: F5 NGINX Ingress Controller (nginx.org/* annotations).
NGINX_ORG_EQUIVALENT = {
    "nginx.ingress.kubernetes.io/proxy-body-size": "nginx.org/client-max-body-size",
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "nginx.org/proxy-read-timeout",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "nginx.org/proxy-send-timeout",
}


def check_ingress_controller(objs, controller_ns="nginx-ingress") -> list[str]:
    """Each Ingress says to the supported controller what it says to the
    retired one, WebSocket backends are declared, and the backend pods admit
    the controller's namespace on their port."""
    out = []
    for ing in of_kind(objs, "Ingress"):
        ann = (ing["metadata"].get("annotations") or {})
        for old, new in NGINX_ORG_EQUIVALENT.items():
            if old in ann and new not in ann:
                out.append(f"{name(ing)}: {old} without {new}")
        for rule in ing["spec"].get("rules") or []:
            for path in rule["http"]["paths"]:
                svc = path["backend"]["service"]
                target = _backend_pods(objs, svc, _ns(ing))
                if target is None and not of_kind(objs, "RabbitmqCluster"):
                    continue  # the chart alone: the backing services come from an overlay
                if target is None:
                    out.append(f"{name(ing)}: backend {svc['name']} is not rendered nor known")
                    continue
                labels, port, websocket = target
                if websocket and svc["name"] not in (ann.get("nginx.org/websocket-services") or "").split(","):
                    out.append(f"{name(ing)}: {svc['name']} serves WebSockets but is not in nginx.org/websocket-services")
                if not _ingress_admits(objs, _ns(ing), labels, port, controller_ns):
                    out.append(f"{name(ing)}: no NetworkPolicy admits {controller_ns} to {svc['name']}'s pods on {port}")
    return out


def _backend_pods(objs, svc, ns):
    """(pod labels, pod port, is WebSocket) behind an Ingress backend."""
    for s in of_kind(objs, "Service"):
        if s["metadata"]["name"] == svc["name"] and _ns(s) == ns:
            port = next(p for p in s["spec"]["ports"]
                        if p.get("name") == svc["port"].get("name") or p["port"] == svc["port"].get("number"))
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                for d in of_kind(objs, "Deployment"):
                    if selector_matches({"matchLabels": s["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"]):
                        target = next(cp["containerPort"] for c in d["spec"]["template"]["spec"]["containers"]
                                      for cp in c.get("ports") or [] if cp.get("name") == target)
            return s["spec"]["selector"], target, False
    for r in of_kind(objs, "RabbitmqCluster"):
        # The cluster operator's client Service: 15674 is Web-STOMP.
        if r["metadata"]["name"] == svc["name"]:
            return {"app.kubernetes.io/name": svc["name"]}, svc["port"].get("number"), True
    for t in of_kind(objs, "Tenant"):
        # The MinIO operator's `minio` Service maps 80 to the pods' 9000.
        if svc["name"] == "minio":
            return {"v1.min.io/tenant": t["metadata"]["name"]}, 9000, False
    return None


def _ingress_admits(objs, ns, labels, port, controller_ns) -> bool:
    for p in of_kind(objs, "NetworkPolicy"):
        if _ns(p) != ns or not selector_matches(p["spec"].get("podSelector"), labels):
            continue
        for rule in p["spec"].get("ingress") or []:
            ports = [x.get("port") for x in rule.get("ports") or []]
            if ports and port not in ports:
                continue
            for peer in rule.get("from") or []:
                sel = ((peer.get("namespaceSelector") or {}).get("matchLabels") or {})
                if sel.get("kubernetes.io/metadata.name") == controller_ns and "podSelector" not in peer:
                    return True
    return False
