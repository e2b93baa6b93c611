"""The harness's Hydra configs, installed as the package ``rprop_bench.conf``.

This folder holds YAML files only; this file makes it a package so that the wheel ships it
and the code finds it through the installed package (:data:`rprop_bench.cli.compose.CONF_DIR`).
"""
