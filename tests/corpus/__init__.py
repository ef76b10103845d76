"""Valid seed files and writers of broken ones, for the hostile-file corpus and the fuzzer (no torch needed)."""
