# Hopper (compute capability 9.0): sageattention's SM90 kernels; sageattn3 does not run here.
require_sageattn3 = False
