#!/bin/bash
# The verifier: checks /app/count.txt with a Python test and writes reward.json.
python3 /tests/check_count.py && reward=1 || reward=0
echo "{\"reward\": $reward}" > /logs/verifier/reward.json
