"""The order of operations (@deploy): build.py (build hosts), rollout.py (publish, GPU
nodes), report.py (the fleet report's facts). Entry files call one function each."""
