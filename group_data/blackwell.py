# Blackwell (compute capability 10.x / 12.x): sageattn3 is required here.
require_sageattn3 = True
