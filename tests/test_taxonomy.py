import numpy as np

from edgesewer import taxonomy as tx


def test_sewer_codes_official_order_and_header():
    assert tx.SEWER_CODES == tuple("RB OB PF DE FS IS RO IN AF BE FO GR PH PB OS OP OK".split())
    assert ",".join(tx.SEWER_CSV_HEADER) == (
        "Filename,WaterLevel,VA,RB,OB,PF,DE,FS,IS,RO,IN,AF,BE,FO,GR,PH,PB,OS,OP,OK,ND,Defect"
    )
    assert set(tx.SEWER_DESCRIPTIONS) == set(tx.SEWER_CODES) == set(tx.CIW)


def test_ciw_values_and_vector():
    w = tx.ciw_vector()
    assert w.shape == (17,) and w.max() == 1.0 and w[0] == 1.0  # RB is the reference weight
    assert np.isclose(w.sum(), 6.7024)  # sum of the official normalised weights
    assert tx.CIW["OS"] == 0.9009 and tx.CIW["AF"] == 0.0811


def test_splits_and_sets():
    assert set(tx.ZS_SEEN) | set(tx.ZS_UNSEEN) == set(tx.SEWER_CODES)
    assert not set(tx.ZS_SEEN) & set(tx.ZS_UNSEEN)
    assert len(tx.ZS_SEEN) == 12 and len(tx.ZS_UNSEEN) == 5
    assert tx.BOTTLENECK_CODES == {"RB", "IS", "FO", "OS"}
    assert len(tx.VIDEOPIPE_CODES) == 17 and tx.VIDEOPIPE_CODES[0] == tx.VIDEOPIPE_NORMAL == "ZC"
    assert tx.code_index("OK") == 16
