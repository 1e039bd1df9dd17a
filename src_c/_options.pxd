# Named options shared by several kernel families, instead of bare booleans at call sites.

cdef enum DxMode:
    # Whether a backward computes its input gradient dx.
    DX_SKIP = 0     # the network's first layer: nothing reads dx (the caller may pass None)
    DX_COMPUTE = 1
