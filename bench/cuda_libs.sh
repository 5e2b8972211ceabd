# bench/cuda_libs.sh: sourced (from the repository root) by the scripts that
# run on the GPU machine: puts libcublas and libcudart, from the CUDA toolkit
# or from PyTorch's wheels, on LD_LIBRARY_PATH for the carried binaries.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], "lib"))' 2>/dev/null) \
         $(python3 -c 'import nvidia.cuda_runtime, os; print(os.path.join(nvidia.cuda_runtime.__path__[0], "lib"))' 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
export LD_LIBRARY_PATH
