# Exploration (2026-11-29, this CPU; not the package): NB-LR (Wang & Manning) log-odds as a product expert
# on the IMDB decision run's outputs, weight swept; reads /tmp/imdb_pred_test.jsonl (the gunzipped
# lease/collect/imdb/predictions_test.jsonl.gz). Needs scikit-learn (the bench extra).
import gzip, json, sys, numpy as np, scipy.sparse as sp
sys.path.insert(0, "/work/main/bench")
import baselines as B
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
R = "/work/main/bench/results/2026-11-29_h200_session6/lease/collect/imdb/"
def rd(p):
    op = gzip.open if p.endswith("gz") else open
    return [json.loads(l) for l in op(p, "rt")]
ours_val = {(r["id"], r["label"]): r for r in rd(R + "predictions_val.jsonl")}
ours_test = {(r["id"], r["label"]): r for r in rd("/tmp/imdb_pred_test.jsonl")}
train = rd("/work/shared/data/imdb/train.jsonl.gz"); test = rd("/work/shared/data/imdb/test.jsonl.gz")
tr = [r for r in train if (str(r["id"]), r["label"]) not in ours_val]; va = [r for r in train if (str(r["id"]), r["label"]) in ours_val]
print(len(tr), len(va), len(test))
vec = CountVectorizer(ngram_range=(1, 2), min_df=2, token_pattern=r"(?u)\b\w\w+\b", dtype=np.float64)
Xtr = vec.fit_transform([r["text"] for r in tr]).tocsr(); Xtr.data[:] = 1
def X(rows):
    m = vec.transform([r["text"] for r in rows]).tocsr(); m.data[:] = 1; return m
Xva, Xte = X(va), X(test)
ytr = np.array([r["label"] for r in tr]); yva = np.array([r["label"] for r in va]); yte = np.array([r["label"] for r in test])
rr = B.log_count_ratio(Xtr, ytr == 1)
for C in (1.0, 10.0):
    m = LogisticRegression(C=C, solver="liblinear", max_iter=5000).fit(Xtr @ sp.diags(rr), ytr)
    sva = m.decision_function(Xva @ sp.diags(rr)); ste = m.decision_function(Xte @ sp.diags(rr))
    print("nblr C", C, "val", np.mean((sva > 0) == yva), "test", np.mean((ste > 0) == yte))
    # our margin: log p(x|pos) - log p(x|neg) (+ log prior ratio = 0)
    mv = np.array([ours_val[(str(r["id"]), r["label"])]["log_likelihoods"][1] - ours_val[(str(r["id"]), r["label"])]["log_likelihoods"][0] for r in va])
    mt = np.array([ours_test[(str(r["id"]), r["label"])]["log_likelihoods"][1] - ours_test[(str(r["id"]), r["label"])]["log_likelihoods"][0] for r in test])
    off_v = 0.0
    for w in (0, 0.25, 0.5, 1, 2, 4, 8, 16):
        print(f"  w={w}: val {np.mean(((mv + w * sva) > 0) == yva):.4f} test {np.mean(((mt + w * ste) > 0) == yte):.4f}")
