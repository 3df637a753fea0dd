# loss_vs_tokens.gp: plots loss_vs_tokens.dat. Rendered by scalinglab report with
#   gnuplot -e "set terminal pdfcairo size 5in,3.4in font 'Sans,10'; set output 'loss_vs_tokens.pdf'" loss_vs_tokens.gp
#   gnuplot -e "set terminal pngcairo size 1100,750 font 'Sans,13'; set output 'loss_vs_tokens.png'" loss_vs_tokens.gp
# (run in this directory); restyle here and rerun.
set encoding utf8
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set key outside right top spacing 1.1 box lc rgb '#bbbbbb'
set format x '10^{%L}'
set yrange [0.514808:2.42142]
set ytics ('0.6' 0.6, '0.8' 0.8, '1' 1, '1.2' 1.2, '1.5' 1.5, '2' 2)
set xrange [3.54987e+06:7.67479e+08]
set xtics ('10M' 1e+07, '30M' 3e+07, '100M' 1e+08, '300M' 3e+08)
set logscale xy
set xlabel 'training tokens D'
set ylabel 'held-out loss (nats/token)'
set title 'Held-out loss during training'
set format y '%g'
plot 'loss_vs_tokens.dat' index 0 with lines lc 1 dt 1 lw 2 title 'dense L0', \
     'loss_vs_tokens.dat' index 1 with lines lc 2 dt 1 lw 2 title 'dense L1', \
     'loss_vs_tokens.dat' index 2 with lines lc 3 dt 1 lw 2 title 'dense L2', \
     'loss_vs_tokens.dat' index 3 with lines lc 4 dt 1 lw 2 title 'dense L3', \
     'loss_vs_tokens.dat' index 4 with points pt 7 ps 1.2 lc rgb 'black' title 'dense budgets', \
     'loss_vs_tokens.dat' index 5 with lines lc 1 dt 2 lw 2 title 'hybrid L0', \
     'loss_vs_tokens.dat' index 6 with lines lc 2 dt 2 lw 2 title 'hybrid L1', \
     'loss_vs_tokens.dat' index 7 with lines lc 3 dt 2 lw 2 title 'hybrid L2', \
     'loss_vs_tokens.dat' index 8 with lines lc 4 dt 2 lw 2 title 'hybrid L3', \
     'loss_vs_tokens.dat' index 9 with points pt 5 ps 1.2 lc rgb 'black' title 'hybrid budgets'
