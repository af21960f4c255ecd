#!/bin/bash
# docs/scaling.md's tables: each shipped config's dry run with the TPU compiler or for a GPU
# target, one at a time, on core $CORE (default 1, beside other work), each line's report in
# $OUT/<config>_<slice>.log and its exit status in .done (a rerun skips the lines that finished
# with 0). ONLY=regex keeps the lines whose topology matches (e.g. ONLY=^h for the GPU lines).
#   pip install --target /tmp/libtpu_site "libtpu==0.0.42.*"
#   pip install --no-deps --target /tmp/cuda_site jax-cuda12-plugin==0.10.2 jax-cuda12-pjrt==0.10.2
#   bash tools/tpu_dry_run_table.sh [OUT]
cd "$(dirname "$0")/.."
OUT=${1:-workdirs/tpu_table}
mkdir -p "$OUT"
export GLIBC_TUNABLES=glibc.malloc.hugetlb=1 JAX_PLATFORMS=cpu PYTHONPATH=${LIBTPU_SITE:-/tmp/libtpu_site}:${CUDA_SITE:-/tmp/cuda_site}
while read config topology extra; do
  name=$(basename $config .py)_${topology//:/_}$(echo "$extra" | grep -o 'DiT-[SBLX]*' | tr -d -)$(echo "$extra" | grep -o 'fsdp=[0-9]*' | tr -d =)$(echo "$extra" | grep -q 'ema_profiles=()' && echo _noprofiles)
  [ "$(cat "$OUT/$name.done" 2>/dev/null)" = 0 ] && continue
  [[ -n "$ONLY" && ! $topology =~ $ONLY ]] && continue
  target=--topology=$topology devices=""  # cpu:N: today's CPU dry run on N simulated devices
  [[ $topology == cpu:* ]] && target="" devices=--xla_force_host_platform_device_count=${topology#cpu:}
  XLA_FLAGS=$devices /usr/bin/time -v timeout ${TIMEOUT:-2700} taskset -c ${CORE:-1} nice -n 10 .venv/bin/python \
    main.py --config=$config --dry_run $target $extra > $OUT/$name.log 2>&1
  echo $? > $OUT/$name.done
done <<'LIST'
configs/imagenet256_dit.py v5p:2x2x2 --config.model.variant=DiT-S/2
configs/imagenet256_dit.py v5e:2x4 --config.model.variant=DiT-S/2
configs/imagenet256_dit.py v5p:2x2x2 --config.model.variant=DiT-XL/2
configs/imagenet256_dit.py v5e:2x4 --config.model.variant=DiT-XL/2
configs/imagenet256_dit.py v5e:2x4 --config.model.variant=DiT-XL/2 --config.train.ema_profiles=()
configs/imagenet256_dit.py v5e:2x4 --config.model.variant=DiT-XL/2 --config.mesh.fsdp=8 --config.mesh.data=1
configs/ffhq.py v5p:2x2x2
configs/ffhq.py v5e:2x4
configs/imagenet256_dit.py v5p:2x2x2
configs/imagenet256_dit.py v5e:2x4
configs/celebahq_ldm.py v5p:2x2x2
configs/imagenet256_dit.py v5p:2x2x4 --config.model.variant=DiT-XL/2 --config.train.batch_size=240
configs/imagenet256_dit.py v4:2x2x4 --config.model.variant=DiT-XL/2 --config.train.batch_size=240
configs/ffhq_ldm.py v5p:2x2x2
configs/ffhq_ldm.py v5e:2x4
configs/imagenet256_dit.py h100:8 --config.model.variant=DiT-S/2
configs/imagenet256_dit.py h100:8 --config.model.variant=DiT-XL/2
configs/imagenet256_dit.py h200:8 --config.model.variant=DiT-XL/2
configs/imagenet256_dit.py h100:8
configs/ffhq.py h100:8
configs/ffhq_ldm.py h100:8
configs/celebahq_ldm.py h100:8
configs/fashion_mnist.py h100:1
configs/fashion_mnist_dit.py h100:1
configs/fashion_mnist_latent_dit.py h100:1
configs/imagenet256_dit.py cpu:8 --config.model.variant=DiT-S/2
configs/imagenet256_dit.py cpu:8 --config.model.variant=DiT-XL/2
configs/ffhq.py cpu:8
configs/ffhq_ldm.py cpu:8
configs/fashion_mnist_dit.py v5e:2x2 --config.train.batch_size=100
configs/fashion_mnist.py v5e:2x2 --config.train.batch_size=100
configs/fashion_mnist_latent_dit.py v5e:2x2 --config.train.batch_size=100
LIST
