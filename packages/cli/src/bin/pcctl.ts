// Entry point of `pcctl`; the commands arrive with issue 6.
process.stderr.write('pcctl: not implemented yet\n');
process.exitCode = 1;
