# Exploration (2026-11-29, this CPU): the n-gram expert with binarized counts and alpha 0.3 / 1.0, w chosen
# by the cross-entropy at a fitted temperature, on the GPU runs' outputs (reads /tmp/imdb_pred_test.jsonl).
import gzip, json, sys, numpy as np
sys.path.insert(0, "/work/main")
from gencls_jax.scoring import ngram
def rd(p):
    op = gzip.open if p.endswith("gz") else open
    return [json.loads(l) for l in op(p, "rt")]
def dedupe(rows, feats, buckets):
    u = np.unique(rows * buckets + feats)
    return u // buckets, u % buckets
def fit_b(seqs, labels, k, order, buckets, binary):
    rows, feats = ngram.hashed(seqs, order, buckets)
    if binary: rows, feats = dedupe(rows, feats, buckets)
    cls = np.asarray(labels, np.int64)[rows]
    return np.bincount(cls * buckets + feats, minlength=k * buckets).reshape(k, buckets)
def lp_b(counts, seqs, alpha, order, binary):
    counts = np.asarray(counts, np.float64); k, buckets = counts.shape
    seen = counts.sum(0) > 0; vocab = max(int(seen.sum()), 1)
    lt = np.log(counts + alpha) - np.log(counts.sum(1, keepdims=True) + alpha * vocab)
    rows, feats = ngram.hashed(seqs, order, buckets)
    if binary: rows, feats = dedupe(rows, feats, buckets)
    keep = seen[feats]; rows, feats = rows[keep], feats[keep]
    out = np.zeros((len(seqs), k))
    for c in range(k): out[:, c] = np.bincount(rows, weights=lt[c, feats], minlength=len(seqs))
    return out
GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
def run(name, tr_texts, tr_y, va, te, prior):
    (va_ll, va_y, va_t), (te_ll, te_y, te_t) = va, te
    for binary in (False, True):
        for alpha in (0.3, 1.0):
            B = 2**20
            c = fit_b(ngram.sequences(tr_texts), tr_y, len(prior), 2, B, binary)
            nv = lp_b(c, ngram.sequences(va_t), alpha, 2, binary); nt = lp_b(c, ngram.sequences(te_t), alpha, 2, binary)
            accv = ngram.accuracies(va_ll, nv, None, va_y, "bayes", prior, GRID)
            def nll(w):
                best = 1e9
                for T in np.exp(np.linspace(np.log(0.2), np.log(30), 60)):
                    z = (va_ll + prior + w * nv) / T; z = z - z.max(1, keepdims=True)
                    best = min(best, float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(z)), va_y])))
                return best
            nl = {x: nll(x) for x in GRID}
            w = min(GRID, key=lambda x: (nl[x], x))
            acct = ngram.accuracies(te_ll, nt, None, te_y, "bayes", prior, GRID)
            alone = np.mean((nt + prior).argmax(1) == te_y)
            print(" nll " + " ".join(f"{x}:{nl[x]:.4f}" for x in GRID)); print(f"{name} binary={binary} alpha={alpha}: w={w} val {accv[w]:.4f} (w0 {accv[0.0]:.4f}) test {acct[w]:.4f} (w0 {acct[0.0]:.4f}) | alone test {alone:.4f} | test by w " + " ".join(f"{x}:{acct[x]:.4f}" for x in GRID))
def load_pred(path, key):
    return {key(r): r for r in rd(path)}
D = "/work/shared/data/"; S5 = "/work/main/bench/results/2026-11-29_h200_session5/lease/collect/"
S6 = "/work/main/bench/results/2026-11-29_h200_session6/lease/collect/"
def small(name, run_dir, train_p, test_p, dev_p=None):
    m = json.load(open(run_dir + "/metrics.json")); prior = np.array(m["prior"])
    pv = load_pred(run_dir + "/predictions_val.jsonl", lambda r: r["id"]); pt = load_pred(run_dir + "/predictions_test.jsonl", lambda r: r["id"])
    names = {r["label_name"]: r["label"] for r in list(pv.values()) + list(pt.values())}
    train = rd(train_p); test = rd(test_p); va = rd(dev_p) if dev_p else [r for r in train if r["id"] in pv]
    tr = [r for r in train if r["id"] not in pv]
    lab = lambda r: names[str(r["label"])]
    V = (np.array([pv[r["id"]]["log_likelihoods"] for r in va]), np.array([lab(r) for r in va]), [r["text"] for r in va])
    T = (np.array([pt[r["id"]]["log_likelihoods"] for r in test]), np.array([lab(r) for r in test]), [r["text"] for r in test])
    run(name, [r["text"] for r in tr], [lab(r) for r in tr], V, T, prior)
small("trec", S5 + "trec", D + "trec/train.jsonl", D + "trec/test.jsonl")
small("sst2", S5 + "sst2", D + "sst2/train.jsonl", D + "sst2/test.jsonl", D + "sst2/dev.jsonl")
# imdb full
m = json.load(open(S6 + "imdb/metrics.json")); prior = np.array(m["prior"])
k = lambda r: (str(r["id"]), int(r["label"]))
pv = load_pred(S6 + "imdb/predictions_val.jsonl", k); pt = load_pred("/tmp/imdb_pred_test.jsonl", k)
train = rd(D + "imdb/train.jsonl.gz"); test = rd(D + "imdb/test.jsonl.gz")
va = [r for r in train if k(r) in pv]; tr = [r for r in train if k(r) not in pv]
V = (np.array([pv[k(r)]["log_likelihoods"] for r in va]), np.array([r["label"] for r in va]), [r["text"] for r in va])
T = (np.array([pt[k(r)]["log_likelihoods"] for r in test]), np.array([r["label"] for r in test]), [r["text"] for r in test])
run("imdb", [r["text"] for r in tr], [r["label"] for r in tr], V, T, prior)
