#!/bin/bash
# The reference solution (runs from the task's WORKDIR, /app).
echo 'Hello, world!' > hello.txt
