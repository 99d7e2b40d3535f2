"""Loihi 2 / Lava 0.10 fixed-point constants: one home for the model, compiler and deploy.

Sources: ``lava/proc/lif/models.py`` (``AbstractPyLifModelFixed``: 24-bit u/v, 12-bit decays,
MSB-aligned threshold and input), ``lava/proc/conv/models.py`` (24-bit accumulator) and the
``PyLifModelBitAcc`` docstring for the parameter bit widths. Lava never checks the ranges
itself: out-of-range values are cast into their storage and silently wrap, so every producer
checks them (nothing is clipped).
"""
UV_BITS = 24                      # u, v are 24-bit
DECAY_SHIFT = 12                  # decays are 12-bit fractions of 4096
DECAY_UNITY = 1 << DECAY_SHIFT    # 4096
VTH_SHIFT = 6                     # threshold is MSB-aligned: vth << 6
ACT_SHIFT = 6                     # synaptic input is MSB-aligned: a_in << 6
U_MAX = 1 << (UV_BITS - 1)        # Lava's ``max_uv_val`` = 2**23
V_MAX = U_MAX - 1                 # v saturates at +/-(2**23 - 1)
CONV_ACC_BITS = 24                # PyConvModelFixed.clamp_precision bits

# Legal (inclusive) parameter ranges.
DU_RANGE = (0, (1 << 12) - 1)                   # unsigned 12 bit
DV_RANGE = (0, (1 << 12) - 1)                   # unsigned 12 bit
VTH_RANGE = (0, (1 << 17) - 1)                  # unsigned 17 bit
BIAS_MANT_RANGE = (-(1 << 12), (1 << 12) - 1)   # signed 13 bit
BIAS_EXP_RANGE = (0, 7)                         # unsigned 3 bit

# The grid the compiler targets (symmetric subsets of the ranges above).
WEIGHT_MANT_MAX = 127                           # 8-bit signed weights, symmetric
BIAS_MANT_MAX = BIAS_MANT_RANGE[1]              # 4095
BIAS_EXP_MAX = BIAS_EXP_RANGE[1]                # 7
BIAS_MAX = BIAS_MANT_MAX << BIAS_EXP_MAX
VTH_MAX = VTH_RANGE[1]
STATE_LIMIT = 1 << 22  # 64 A + B must stay below: |v| <= 2 (64 A + B) < 2^23

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
