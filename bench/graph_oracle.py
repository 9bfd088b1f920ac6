"""Oracle graph features on the default simulator: how separable are its graph typologies, whatever the encoder?

Usage: OMP_NUM_THREADS=1 python bench/graph_oracle.py   (about 30 s)
For each train and validation transaction, on the graph of its whole split and earlier ones (later rows included: an upper bound no deployment reaches; see graph_refresh.py): degrees and counts at both ends, transfers
into the receiver / out of the sender within +-48 h, the shortest return path receiver -> sender (cycle length), and
2-paths between the same accounts (scatter-gather). HistGradientBoosting is fitted on the train rows and validation AP
is printed overall and per typology (AP over that typology's fraud rows and all legitimate rows), then the median of
each feature per typology. The figures are in nbs/03b_multignn.ipynb, "Why the graph view was weak".
"""
import time
import numpy as np, pandas as pd, scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score as aps
from fusion_nb.simulator import simulate_transactions
from fusion_nb.views import default_split
from fusion_nb.graph_view import visible_rows

def pair_counts(keys_query, keys_table):
    "How often each query key occurs among the table keys."
    u, c = np.unique(keys_table, return_counts=True)
    i = np.searchsorted(u, keys_query); i = np.minimum(i, len(u)-1)
    return np.where(u[i] == keys_query, c[i], 0)

def oracle_features(src, dst, t, vis, n, rows):
    "features for `rows` computed on visible edges `vis` (bool)"
    s, d, tt = src[vis], dst[vis], t[vis]
    pairs = np.unique(s.astype(np.int64) * n + d)
    ps, pd_ = pairs // n, pairs % n
    A = sp.csr_matrix((np.ones(len(pairs)), (ps, pd_)), shape=(n, n))
    out_deg = np.bincount(ps, minlength=n); in_deg = np.bincount(pd_, minlength=n)
    out_cnt = np.bincount(s, minlength=n); in_cnt = np.bincount(d, minlength=n)
    # 2-paths u->v->w over distinct pairs
    indptr = A.indptr
    e_u, e_v = ps, pd_
    k = out_deg[e_v]
    tri_e = np.repeat(np.arange(len(pairs)), k)
    start = indptr[e_v]
    off = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    tri_w = A.indices[np.repeat(start, k) + off]
    tri_u = e_u[tri_e]
    P2key = tri_u.astype(np.int64) * n + tri_w
    p2 = pair_counts(P2key, P2key)                    # number of 2-paths u->*->w
    sg_scatter = np.zeros(len(pairs)); np.maximum.at(sg_scatter, tri_e, p2)
    # gather leg edge (v,w): max over u of p2(u,w): triple's second edge is pair (v,w)
    vw = e_v[tri_e].astype(np.int64) * n + tri_w
    sg_gather = pd.Series(p2).groupby(vw).max()
    sgg = sg_gather.reindex(pairs).fillna(0).to_numpy()
    # shortest path dst->src (cycle length - 1)
    D = shortest_path(A, directed=True, unweighted=True, indices=None) if n <= 15000 else None
    r_s, r_d = src[rows], dst[rows]
    key = r_s.astype(np.int64) * n + r_d
    idx = np.searchsorted(pairs, key)
    back = D[r_d, r_s]; back = np.where(np.isfinite(back), back, 99)
    # time-windowed fan in / out (distinct counterparties within +-window of the row's time)
    f = {}
    f['out_deg_src'] = out_deg[r_s]; f['in_deg_dst'] = in_deg[r_d]
    f['in_deg_src'] = in_deg[r_s]; f['out_deg_dst'] = out_deg[r_d]
    f['out_cnt_src'] = out_cnt[r_s]; f['in_cnt_dst'] = in_cnt[r_d]
    f['in_cnt_src'] = in_cnt[r_s]; f['out_cnt_dst'] = out_cnt[r_d]
    f['pair_cnt'] = pair_counts(key, s.astype(np.int64) * n + d)
    f['cycle_len'] = np.minimum(back + 1, 8)
    f['sg_scatter'] = sg_scatter[idx]; f['sg_gather'] = sgg[idx]
    return pd.DataFrame(f)

def windowed(src, dst, t, vis, rows, window=48.0):
    "distinct senders into dst and receivers from src within +-window hours (visible edges)"
    s, d, tt = src[vis], dst[vis], t[vis]
    out = {}
    for name, a, b, q in (('win_in_dst', d, s, dst[rows]), ('win_out_src', s, d, src[rows])):
        order = np.lexsort((tt, a)); a_o, b_o, t_o = a[order], b[order], tt[order]
        # count edges (not distinct) in window per row: searchsorted by (a, t)
        keyA = a_o * 1e7 + t_o
        lo = np.searchsorted(keyA, q * 1e7 + t[rows] - window); hi = np.searchsorted(keyA, q * 1e7 + t[rows] + window)
        out[name] = hi - lo
    return pd.DataFrame(out)

if __name__ == '__main__':
    tx = simulate_transactions()
    f = tx.frame; split = default_split(tx)
    src, dst, t = f['src'].to_numpy(), f['dst'].to_numpy(), f['time'].to_numpy()
    y = f['label'].to_numpy(); typ = f['typology'].astype(str).to_numpy()
    n = tx.n_accounts
    print('rows', len(f), 'accounts', n, 'fraud', y.sum(), pd.Series(typ[y == 1]).value_counts().to_dict())
    for sname in ('train', 'val', 'test'):
        m = split == sname; print(sname, m.sum(), y[m].sum(), pd.Series(typ[m & (y == 1)]).value_counts().to_dict())
    t0 = time.time()
    feats = {}
    for sname in ('train', 'val'):
        rows = np.flatnonzero(split == sname)
        vis = visible_rows(split, sname)
        F = pd.concat([oracle_features(src, dst, t, vis, n, rows), windowed(src, dst, t, vis, rows)], axis=1)
        F['amount_log'] = np.log1p(f['amount'].to_numpy()[rows]); F['type'] = f['type'].cat.codes.to_numpy()[rows]
        feats[sname] = (rows, F)
    print('features', round(time.time() - t0, 1), 's')
    tr, Ftr = feats['train']; va, Fva = feats['val']
    def report(name, score, rows):
        yy = y[rows]; out = {'AP': aps(yy, score)}
        for ty in ('mule_ring', 'cycle', 'scatter_gather', 'account_takeover', 'spending_spree'):
            keep = (yy == 0) | (typ[rows] == ty)
            if (typ[rows] == ty).sum(): out[ty] = aps(yy[keep], score[keep])
        print(name, {k: round(v, 3) for k, v in out.items()})
    for cols in (['amount_log', 'type'], [c for c in Ftr.columns]):
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0).fit(Ftr[cols], y[tr])
        report(f'HGB oracle {len(cols)} cols', clf.predict_proba(Fva[cols])[:, 1], va)
    # each feature's median per typology (validation rows)
    g = Fva.assign(typ=typ[va])
    print(g.groupby('typ').median().round(1).T.to_string())
