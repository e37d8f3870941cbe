"""The kernel: ids, clocks, bilingual text, the root error tree and Sensitive values. No I/O."""
