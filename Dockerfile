# The image cluster/rayjob.yaml runs: equisweep, its locked dependencies and MNIST on Ray's GPU image. Build it from
# the repository root and push it where your Kubernetes cluster pulls from (EDIT the name, here and in rayjob.yaml):
#
#   docker build -t ghcr.io/YOUR-ORG/equisweep:0.1.0 . && docker push ghcr.io/YOUR-ORG/equisweep:0.1.0
#
# The base image's Ray is the lock's ray (requirements/lock.txt) and the RayJob's rayVersion; py311 is the Python the
# stack is tested with. .dockerignore keeps local environments, data and results out of the COPY.
FROM rayproject/ray:2.60.0-py311-gpu

COPY --chown=ray:users . /home/ray/equisweep
WORKDIR /home/ray/equisweep

# Every version from the lock, the same as on every other node (the image's own packages are moved to the lock's
# versions where they differ). MNIST lands in ./data, what the specs' `data_dir: data` means from this directory.
RUN pip install --no-cache-dir -c requirements/lock.txt -e . \
    && python -c "from pathlib import Path; from equisweep.datamodules.sources import get_source, prepare; \
prepare(get_source('mnist'), Path('data').absolute(), download=True)"
