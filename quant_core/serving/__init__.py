"""Running the engine for a server: worker processes with limits (worker), the warm pool of them (pool),
the jobs they run (jobs), executors for shard work (executors) and whole-dataset evaluation
(dataset_evaluation). May import the engine, inputs and results; they never import it.
"""
