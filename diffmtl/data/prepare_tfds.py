"""Prepares an image folder as a TFDS dataset (ArrayRecord by default), e.g. FFHQ for a TPU pod.

  python -m diffmtl.data.prepare_tfds --images=/data/ffhq/images1024x1024 --name=ffhq256 \
      --image_size=256 --data_dir=gs://my-bucket/tfds

then train with --config.data.name=tfds --config.data.tfds_name=ffhq256
--config.data.dir=gs://my-bucket/tfds. Example i is file i of the sorted tree (TFDS shuffling
is disabled), centre-cropped and resized by the image-folder source's own function, so a run
on the TFDS copy sees exactly the batches a run on the folder sees. Nothing is downloaded.
"""

from __future__ import annotations

import types

from absl import app, flags

from diffmtl.data.image_folder import ImageFolder
from diffmtl.data.tfds_source import import_tfds

tfds = import_tfds()  # This command's one dependency on TensorFlow: the tfds extra.


class _FolderImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """One 'train' split: the images of `folder` (an ImageFolder), in its order."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "An image folder, centre-cropped and resized (diffmtl)."}
    folder: ImageFolder

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"image": tfds.features.Image(shape=self.folder.image_shape)}
        if self.folder.classes:  # one sub-folder per class: a 'label' feature
            features["label"] = tfds.features.ClassLabel(names=self.folder.classes)
        features = tfds.features.FeaturesDict(features)
        return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(self.folder.num_examples):
            example = {"image": self.folder.load(i)}
            if self.folder.classes:
                example["label"] = int(self.folder.labels[i])
            yield i, example


def prepare(
    images: str, name: str, image_size: int, data_dir: str, file_format: str = "array_record"
) -> tfds.core.DatasetBuilder:
    """Writes the folder tree `images` as TFDS dataset `name` under data_dir; its builder."""
    folder = ImageFolder(images, image_size)
    cls = types.new_class(
        "FolderImages",
        (_FolderImages,),
        {"skip_registration": True},
        lambda namespace: namespace.update(name=name, folder=folder),
    )
    builder = cls(data_dir=data_dir, file_format=file_format)
    builder.download_and_prepare()
    return builder


def main(argv):
    del argv
    f = flags.FLAGS
    builder = prepare(f.images, f.name, f.image_size, f.data_dir, f.file_format)
    print(f"{builder.info.splits['train'].num_examples} images in {builder.data_dir}")


if __name__ == "__main__":
    flags.DEFINE_string("images", None, "The image tree (PNG / JPEG files).", required=True)
    flags.DEFINE_string(
        "name", None, "TFDS dataset name (snake_case), e.g. ffhq256.", required=True
    )
    flags.DEFINE_integer("image_size", 256, "Square size the images are cropped and resized to.")
    flags.DEFINE_string("data_dir", None, "TFDS data_dir (a local path or gs://).", required=True)
    flags.DEFINE_enum("file_format", "array_record", ["array_record", "tfrecord"], "File format.")
    app.run(main)
