"""The compute node's commands, one module each with main(argv) -> exit status.

Their launchers are tools/sim/cn/NAME (/usr/sbin/NAME inside a CN); each wraps
main in common.emulated (faults, the command log).
"""
