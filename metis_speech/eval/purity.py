"""How much phonetic content discrete speech ids carry: purity and phone-normalised mutual
information against frame-level phone labels (HuBERT's measures).

``ids`` and ``phones`` are aligned integer sequences (one entry per 20 ms frame). With the
joint distribution p(phone, id):

* cluster purity  sum_id max_phone p(phone, id)   (how well one id predicts one phone)
* phone purity    sum_phone max_id p(phone, id)   (how well one phone maps to one id)
* PNMI            I(phone; id) / H(phone)          (0: ids say nothing of phones, 1: all)
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

__all__ = ["phone_purity"]


def phone_purity(ids: Sequence[int], phones: Sequence[int], ignore: Sequence[int] = ()) -> Dict[str, float]:
    """Purity measures of ``ids`` against ``phones`` (equal-length integer sequences);
    frames whose phone is in ``ignore`` (e.g. silence) are left out."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    phones = np.asarray(phones, dtype=np.int64).reshape(-1)
    if ids.shape != phones.shape:
        raise ValueError(f"ids and phones differ in length: {ids.size} vs {phones.size}")
    keep = ~np.isin(phones, np.asarray(list(ignore), dtype=np.int64))
    ids, phones = ids[keep], phones[keep]
    if ids.size == 0:
        raise ValueError("no frames to score")
    _, ids = np.unique(ids, return_inverse=True)
    _, phones = np.unique(phones, return_inverse=True)
    joint = np.zeros((phones.max() + 1, ids.max() + 1))
    np.add.at(joint, (phones, ids), 1.0)
    joint /= joint.sum()
    p_ph, p_id = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (p_ph[:, None] * p_id[None, :])[nz])).sum())
    h_ph = float(-(p_ph[p_ph > 0] * np.log(p_ph[p_ph > 0])).sum())
    return {
        "cluster_purity": float(joint.max(0).sum()),
        "phone_purity": float(joint.max(1).sum()),
        "pnmi": mi / h_ph if h_ph > 0 else 0.0,
        "frames": int(ids.size),
        "ids_used": int(ids.max() + 1),
    }
