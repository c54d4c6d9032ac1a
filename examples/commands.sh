prefork run examples.mailer:Mailer --workers 4 --timeout 30
prefork run --config examples/prefork.toml
python -m prefork run examples.mailer:Mailer
