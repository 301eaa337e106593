"""anomaly: resonant anomaly detection over a scan of signal regions in m_JJ.

ANODE, CATHODE, CWoLa, R-ANODE and SIGMA share one interface with the idealized (IAD) and
supervised references; see :mod:`twinflow.anomaly.methods`.
"""
