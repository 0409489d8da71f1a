"""How job attempts come to run: the Launcher protocol and its implementations.

The supervisor owns policy (slots, queue order, limits, cancel, recovery); a launcher owns
mechanism (spawning, signalling a whole process tree, measuring it, settling orphans).
"""
