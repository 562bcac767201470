# Source this file (`. scripts/cuda-env.sh`) to build funmatch's `cuda` feature on a machine
# without a GPU or a system CUDA toolkit: it installs NVIDIA's CUDA 13.0 compiler wheels from
# PyPI into a virtual environment (once), and points the build at them.
#
#   FUNMATCH_CUDA_VENV   where the wheels live (default: ~/.cache/funmatch/cuda-venv)
#   FUNMATCH_CUDNN=1     also install cuDNN (for `--features cudnn`)
#   CUDA_COMPUTE_CAP     GPU architecture to compile for (default 90: H100/H200)
#
# Versions match PyTorch 2.11 (cu130) on the GPU machines; nvcc stays at 13.0 because newer
# nvcc emits PTX that driver 580 cannot load, and nvvm is pinned to match nvcc.

_funmatch_cuda_setup() {
    local venv="${FUNMATCH_CUDA_VENV:-$HOME/.cache/funmatch/cuda-venv}"
    local wheels=(
        nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88
        nvidia-curand==10.4.0.35 nvidia-cublas==13.1.0.3
    )
    [ "${FUNMATCH_CUDNN:-0}" = 1 ] && wheels+=(nvidia-cudnn-cu13==9.19.0.56)
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" || return 1
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${wheels[@]}" || return 1

    local root
    root=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))') || return 1
    [ -x "$root/bin/nvcc" ] || { echo "cuda-env: no nvcc under $root" >&2; return 1; }

    # Unversioned names for the linker, which the wheels lack.
    local lib="$root/lib" link="$venv/link"
    mkdir -p "$link"
    for name in cudart cublas cublasLt curand nvrtc; do
        local real
        real=$(ls "$lib"/lib$name.so.* 2>/dev/null | sort | head -n 1)
        [ -n "$real" ] && ln -sf "$real" "$link/lib$name.so"
    done

    export CUDA_HOME="$root" CUDA_PATH="$root" CUDA_ROOT="$root"
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
    export PATH="$root/bin:$PATH"
    export FUNMATCH_CUDA_LINK_DIR="$link"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

_funmatch_cuda_setup
